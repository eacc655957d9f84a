//! Regenerates the fixtures by running the pinned `tc` under strace in a throwaway network
//! namespace holding one veth pair. Never runs unless asked:
//!
//! ```sh
//! daemon/tests/tc_golden/build-tc.sh                       # builds iproute2 v7.1.0's tc into target/iproute2
//! FAULTLINE_TC=target/iproute2/tc/tc \
//!   cargo test -p faultline-daemon --test tc_golden regenerate -- --ignored
//! ```
//!
//! Needs root, `ip`, `strace`. netem requests fail on kernels without sch_netem
//! ("Specified qdisc kind is unknown"), but `tc` has sent them by then, which is what we record.

use std::path::Path;
use std::process::{Command, Output};

use super::cases::{Case, cases};
use super::fixture::{self, Fixture};

/// The fixtures' bytes depend on the tc version (iproute2 6.9 moved netem delays to LATENCY64,
/// 6.15 made tc_calc_xmittime round up): refuse any other.
const TC_VERSION: &str = "iproute2-7.1.0";
const RTM_NEWQDISC: u16 = 36;
const RTM_DELQDISC: u16 = 37;

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} {args:?}: {e}"))
}

fn ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Deletes the namespace (and the veth pair in it) however the test ends.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "delete", &self.0]);
    }
}

#[test]
#[ignore = "regenerates fixtures: needs root, strace and FAULTLINE_TC (see daemon/tests/tc_golden/regen.rs)"]
fn regenerate() {
    let tc = std::env::var("FAULTLINE_TC").expect("FAULTLINE_TC=/path/to/tc (iproute2 7.1.0)");
    let version = ok(&tc, &["-V"]);
    assert!(
        version.contains(TC_VERSION),
        "{tc} is `{version}`, fixtures need {TC_VERSION}"
    );

    let ns = Netns(format!("fl-golden-{}", std::process::id()));
    ok("ip", &["netns", "add", &ns.0]);
    ok(
        "ip",
        &[
            "-n", &ns.0, "link", "add", "v0", "type", "veth", "peer", "name", "v1",
        ],
    );
    ok("ip", &["-n", &ns.0, "link", "set", "v0", "up"]);
    let ifindex: u32 = ok(
        "ip",
        &["netns", "exec", &ns.0, "cat", "/sys/class/net/v0/ifindex"],
    )
    .parse()
    .expect("ifindex");

    for case in cases() {
        let fixture = capture(&ns.0, &tc, &version, ifindex, &case);
        let path = fixture::path(case.dir, case.name);
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        std::fs::write(&path, fixture.render()).expect("write fixture");
        // Leave v0 bare for the next case.
        let _ = run(
            "ip",
            &[
                "netns", "exec", &ns.0, &tc, "qdisc", "del", "dev", "v0", "root",
            ],
        );
    }
}

fn capture(ns: &str, tc: &str, version: &str, ifindex: u32, case: &Case) -> Fixture {
    let tc_args: Vec<&str> = case.tc.split_whitespace().collect();
    if case.dir == "del" {
        // Something to delete: the tbf parent the del cases name.
        let add = "qdisc add dev v0 root handle fa17: tbf rate 1mbit burst 10000 limit 20000";
        let mut args = vec!["netns", "exec", ns, tc];
        args.extend(add.split_whitespace());
        ok("ip", &args);
    }
    let trace = std::env::temp_dir().join(format!("fl-golden-{}-{}.strace", case.dir, case.name));
    let trace_arg = trace.to_str().expect("utf-8 temp path");
    let mut args = vec![
        "netns",
        "exec",
        ns,
        "strace",
        "-qq",
        "-o",
        trace_arg,
        "-e",
        "trace=sendmsg",
        "-e",
        "write=all",
        "-xx",
        "-s",
        "65536",
        tc,
        "qdisc",
    ];
    args.extend(&tc_args);
    let out = run("ip", &args);
    let requests = requests(&trace);
    let _ = std::fs::remove_file(&trace);
    let mut qdisc = requests.into_iter().filter(|r| {
        let kind = u16::from_ne_bytes([r[4], r[5]]);
        kind == RTM_NEWQDISC || kind == RTM_DELQDISC
    });
    let bytes = qdisc
        .next()
        .unwrap_or_else(|| panic!("{}: tc sent no qdisc request", case.name));
    assert!(
        qdisc.next().is_none(),
        "{}: more than one qdisc request",
        case.name
    );
    assert_eq!(
        u32::from_ne_bytes(bytes[20..24].try_into().unwrap()),
        ifindex,
        "tcm_ifindex"
    );

    let stderr = String::from_utf8_lossy(&out.stderr)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let stderr = if stderr.is_empty() {
        "(empty)".to_owned()
    } else {
        stderr
    };
    Fixture {
        command: format!("tc qdisc {}", case.tc),
        ifindex,
        bytes,
        notes: vec![
            format!("tc: {version}"),
            format!(
                "tc exit status: {}; stderr: {}",
                out.status.code().unwrap_or(-1),
                stderr
            ),
            "regenerate: see daemon/tests/tc_golden/regen.rs".to_owned(),
        ],
    }
}

/// The buffers of each `sendmsg` in an `strace -e write=all -xx` log. strace dumps them as
/// ` | 00000  58 00 00 00 24 00 05 06  90 09 0f 6b 00 00 00 00  X...$......k.... |`.
fn requests(trace: &Path) -> Vec<Vec<u8>> {
    let text = std::fs::read_to_string(trace).expect("strace log");
    let mut calls: Vec<Vec<u8>> = Vec::new();
    for line in text.lines() {
        if line.starts_with("sendmsg(") {
            calls.push(Vec::new());
        } else if let Some(dump) = line.trim_start().strip_prefix("| ") {
            // 5 offset digits, 2 spaces, then 16 "xx " columns (49 characters with the gap).
            let hex = dump
                .get(7..56)
                .unwrap_or_else(|| dump.get(7..).unwrap_or(""));
            let call = calls.last_mut().expect("dump before sendmsg");
            call.extend(
                hex.split_whitespace()
                    .map(|b| u8::from_str_radix(b, 16).expect("hex byte")),
            );
        }
    }
    calls
}
