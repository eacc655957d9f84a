//! What the benchmarks share: writing their section of `docs/benchmarks.md`
//! (`FAULTLINE_BENCH_DOCS`, set by `cargo xtask bench`) and the date they print.
//!
//! A section is everything from its `## Heading` line to the next `## ` line (its `###`
//! subsections included). Writing one replaces that section, or appends it when the file has
//! none, and leaves every other section as it was.

use std::path::Path;

/// `text` with the section whose heading is `section`'s first line replaced by `section`
/// (appended when there is none).
pub fn replace_section(text: &str, section: &str) -> String {
    let heading = section.lines().next().unwrap_or("").trim_end();
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    let mut replaced = false;
    while let Some(line) = lines.next() {
        if !replaced && line.trim_end() == heading {
            out.push_str(section);
            if !section.ends_with('\n') {
                out.push('\n');
            }
            replaced = true;
            while let Some(next) = lines.peek() {
                if next.starts_with("## ") {
                    out.push('\n');
                    break;
                }
                lines.next();
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if !replaced {
        if !out.is_empty() && !out.ends_with("\n\n") {
            out.push('\n');
        }
        out.push_str(section);
        if !section.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

/// Writes `section` (starting with its `## Heading` line) into the markdown file `path`; a
/// missing file starts as `# Benchmarks`.
pub fn write_section(path: &Path, section: &str) -> Result<(), String> {
    if !section.starts_with("## ") {
        return Err(format!(
            "a benchmark section starts with its `## ` heading, got `{}`",
            section.lines().next().unwrap_or("")
        ));
    }
    let old = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "# Benchmarks\n".to_owned(),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    std::fs::write(path, replace_section(&old, section))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Today's date (UTC) as `YYYY-MM-DD`.
pub fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "# Benchmarks\n\n## Sidecar\n\nold sidecar\n\n### Before/after\n\nab\n\n\
                       ## Webhook\n\nwebhook table\n";

    #[test]
    fn a_section_is_replaced_with_its_subsections_and_others_stay() {
        let out = replace_section(DOC, "## Sidecar\n\nnew sidecar\n");
        assert_eq!(
            out,
            "# Benchmarks\n\n## Sidecar\n\nnew sidecar\n\n## Webhook\n\nwebhook table\n"
        );
        let out = replace_section(DOC, "## Webhook\n\nnew webhook\n");
        assert!(out.starts_with("# Benchmarks\n\n## Sidecar\n\nold sidecar\n\n### Before/after"));
        assert!(out.ends_with("ab\n\n## Webhook\n\nnew webhook\n"), "{out}");
        // Writing the same section twice changes nothing the second time.
        assert_eq!(replace_section(&out, "## Webhook\n\nnew webhook\n"), out);
    }

    #[test]
    fn a_new_section_is_appended() {
        let out = replace_section(DOC, "## Daemon\n\ntable\n");
        assert!(out.starts_with(DOC), "{out}");
        assert!(
            out.ends_with("webhook table\n\n## Daemon\n\ntable\n"),
            "{out}"
        );
    }

    #[test]
    fn a_missing_file_starts_as_benchmarks() {
        let dir = std::env::temp_dir().join(format!("faultline-bench-doc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("benchmarks.md");
        let _ = std::fs::remove_file(&path);
        write_section(&path, "## Daemon\n\ntable\n").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(text, "# Benchmarks\n\n## Daemon\n\ntable\n");
        assert!(write_section(&path, "Daemon\n").is_err());
    }

    #[test]
    fn dates_are_civil() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_513), (2026, 3, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
