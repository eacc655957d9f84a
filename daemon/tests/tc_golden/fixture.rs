//! The fixture format: `#` header lines (the tc command, tc's version, the ifindex it
//! resolved, what tc printed), then the captured request as hex, 16 bytes a line.

use std::fmt::Write as _;
use std::path::PathBuf;

pub(crate) struct Fixture {
    /// `tc qdisc …` exactly as run.
    pub(crate) command: String,
    pub(crate) ifindex: u32,
    pub(crate) bytes: Vec<u8>,
    /// Free-form header lines (tc version, exit status, stderr).
    pub(crate) notes: Vec<String>,
}

pub(crate) fn path(dir: &str, name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tc")
        .join(dir)
        .join(format!("{name}.hex"))
}

impl Fixture {
    pub(crate) fn parse(text: &str) -> Result<Fixture, String> {
        let (mut command, mut ifindex, mut notes, mut hex) =
            (None, None, Vec::new(), String::new());
        for line in text.lines() {
            if let Some(header) = line.strip_prefix("# ") {
                if let Some(c) = header.strip_prefix("command: ") {
                    command = Some(c.to_owned());
                } else if let Some(i) = header.strip_prefix("ifindex: ") {
                    ifindex = Some(i.parse::<u32>().map_err(|e| format!("ifindex: {e}"))?);
                } else {
                    notes.push(header.to_owned());
                }
            } else {
                hex.extend(line.chars().filter(|c| !c.is_whitespace()));
            }
        }
        if hex.len() % 2 != 0 {
            return Err("odd number of hex digits".into());
        }
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        Ok(Fixture {
            command: command.ok_or("no `# command:` line")?,
            ifindex: ifindex.ok_or("no `# ifindex:` line")?,
            bytes,
            notes,
        })
    }

    pub(crate) fn render(&self) -> String {
        let mut out = format!("# command: {}\n# ifindex: {}\n", self.command, self.ifindex);
        for note in &self.notes {
            let _ = writeln!(out, "# {note}");
        }
        for line in self.bytes.chunks(16) {
            let words: Vec<String> = line
                .chunks(4)
                .map(|w| w.iter().map(|b| format!("{b:02x}")).collect())
                .collect();
            let _ = writeln!(out, "{}", words.join(" "));
        }
        out
    }

    /// tc's `nlmsg_seq` (a timestamp, different on every run).
    pub(crate) fn seq(&self) -> u32 {
        u32::from_ne_bytes(self.bytes[8..12].try_into().expect("nlmsghdr"))
    }
}
