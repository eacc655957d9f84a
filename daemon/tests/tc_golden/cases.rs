//! The golden table: each case is a `tc qdisc …` command line (run on device `v0`) and the
//! request we build for the same parameters. The regeneration test runs the command lines; the
//! comparison test builds ours. One table, so the two cannot drift apart.

use faultline_daemon::network::tc::{NetemParams, Qdisc, TC_H_ROOT, TbfLimit, TbfOptions, handle};

/// Our tbf handle in these fixtures, and the netem one (a child of tbf's class 1 or the root).
pub(crate) const TBF: u32 = handle(0xfa17, 0);
pub(crate) const NETEM: u32 = handle(0xfa18, 0);

pub(crate) enum Op {
    Add {
        parent: u32,
        handle: u32,
        qdisc: Qdisc,
    },
    Del {
        parent: u32,
        handle: u32,
    },
}

pub(crate) struct Case {
    /// `fixtures/<dir>/<name>.hex`
    pub(crate) dir: &'static str,
    pub(crate) name: &'static str,
    /// Arguments after `tc qdisc`.
    pub(crate) tc: &'static str,
    pub(crate) ours: Op,
}

/// A percentage as tc's `get_percent()` (tc/q_netem.c) turns it into netem's u32:
/// `rint(strtod(s) / 100. * UINT32_MAX)` in `double` (`rint` rounds half to even). Rust's `f64`
/// parsing is correctly rounded like glibc's `strtod`, so this is bit-identical.
pub(crate) fn pct(percent: &str) -> u32 {
    let p: f64 = percent.parse().expect("percent");
    (p / 100. * f64::from(u32::MAX)).round_ties_even() as u32
}

const MS: u64 = 1_000_000;

fn netem(name: &'static str, tc: &'static str, set: impl FnOnce(&mut NetemParams)) -> Case {
    netem_at(name, tc, TC_H_ROOT, set)
}

fn netem_at(
    name: &'static str,
    tc: &'static str,
    parent: u32,
    set: impl FnOnce(&mut NetemParams),
) -> Case {
    let mut o = NetemParams {
        limit_packets: 1000,
        ..NetemParams::default()
    };
    set(&mut o);
    Case {
        dir: "netem",
        name,
        tc,
        ours: Op::Add {
            parent,
            handle: NETEM,
            qdisc: Qdisc::Netem(o),
        },
    }
}

fn tbf(name: &'static str, tc: &'static str, o: TbfOptions) -> Case {
    Case {
        dir: "tbf",
        name,
        tc,
        ours: Op::Add {
            parent: TC_H_ROOT,
            handle: TBF,
            qdisc: Qdisc::Tbf(o),
        },
    }
}

fn rate(rate: u64, burst: u32, limit: TbfLimit) -> TbfOptions {
    TbfOptions {
        rate_bytes_per_sec: rate,
        burst_bytes: burst,
        limit,
        peakrate_bytes_per_sec: None,
        mtu_bytes: None,
    }
}

pub(crate) fn cases() -> Vec<Case> {
    use TbfLimit::{Bytes, LatencyMicros};
    vec![
        netem(
            "delay",
            "add dev v0 root handle fa18: netem delay 10ms",
            |o| {
                o.latency_ns = 10 * MS;
            },
        ),
        netem(
            "delay_jitter",
            "add dev v0 root handle fa18: netem delay 100ms 10ms",
            |o| {
                o.latency_ns = 100 * MS;
                o.jitter_ns = 10 * MS;
            },
        ),
        netem(
            "delay_jitter_corr",
            "add dev v0 root handle fa18: netem delay 100ms 10ms 25%",
            |o| {
                o.latency_ns = 100 * MS;
                o.jitter_ns = 10 * MS;
                o.delay_correlation = pct("25");
            },
        ),
        netem(
            "delay_sub_us",
            "add dev v0 root handle fa18: netem delay 1500ns 250ns",
            |o| {
                o.latency_ns = 1500;
                o.jitter_ns = 250;
            },
        ),
        netem(
            "delay_large",
            "add dev v0 root handle fa18: netem delay 300s 10s",
            |o| {
                // 300 s = 4.7e9 ticks: beyond the u32 qopt field, only LATENCY64 can carry it.
                o.latency_ns = 300_000 * MS;
                o.jitter_ns = 10_000 * MS;
            },
        ),
        netem("loss", "add dev v0 root handle fa18: netem loss 5%", |o| {
            o.loss = pct("5")
        }),
        netem(
            "loss_corr",
            "add dev v0 root handle fa18: netem loss 5% 25%",
            |o| {
                o.loss = pct("5");
                o.loss_correlation = pct("25");
            },
        ),
        netem(
            "loss_tiny",
            "add dev v0 root handle fa18: netem loss 0.0001%",
            |o| o.loss = pct("0.0001"),
        ),
        netem(
            "loss_all",
            "add dev v0 root handle fa18: netem loss 100%",
            |o| o.loss = u32::MAX,
        ),
        netem(
            "duplicate",
            "add dev v0 root handle fa18: netem duplicate 1%",
            |o| {
                o.duplicate = pct("1");
            },
        ),
        // tc drops a duplicate correlation unless another correlation is given (q_netem.c never
        // marks TCA_NETEM_CORR present for it): what tc sends equals ours *without* it. See
        // `duplicate_correlation_is_kept_unlike_tc`.
        netem(
            "duplicate_corr_only",
            "add dev v0 root handle fa18: netem duplicate 1% 30%",
            |o| {
                o.duplicate = pct("1");
            },
        ),
        netem(
            "duplicate_corr_with_loss_corr",
            "add dev v0 root handle fa18: netem loss 1% 10% duplicate 2% 30%",
            |o| {
                o.loss = pct("1");
                o.loss_correlation = pct("10");
                o.duplicate = pct("2");
                o.duplicate_correlation = pct("30");
            },
        ),
        netem(
            "corrupt",
            "add dev v0 root handle fa18: netem corrupt 0.1%",
            |o| o.corrupt = pct("0.1"),
        ),
        netem(
            "corrupt_corr",
            "add dev v0 root handle fa18: netem corrupt 2% 20%",
            |o| {
                o.corrupt = pct("2");
                o.corrupt_correlation = pct("20");
            },
        ),
        netem(
            "reorder_gap",
            "add dev v0 root handle fa18: netem delay 10ms reorder 25% 50% gap 5",
            |o| {
                o.latency_ns = 10 * MS;
                o.reorder = pct("25");
                o.reorder_correlation = pct("50");
                o.gap = 5;
            },
        ),
        netem(
            "reorder_no_gap",
            "add dev v0 root handle fa18: netem delay 10ms reorder 10%",
            |o| {
                o.latency_ns = 10 * MS;
                o.reorder = pct("10");
            },
        ),
        netem(
            "rate",
            "add dev v0 root handle fa18: netem rate 1mbit",
            |o| o.rate_bytes_per_sec = 125_000,
        ),
        netem(
            "rate64",
            "add dev v0 root handle fa18: netem rate 40gbit",
            |o| {
                o.rate_bytes_per_sec = 5_000_000_000;
            },
        ),
        netem(
            "limit",
            "add dev v0 root handle fa18: netem limit 50000 delay 1ms",
            |o| {
                o.limit_packets = 50_000;
                o.latency_ns = MS;
            },
        ),
        netem(
            "combo",
            "add dev v0 root handle fa18: netem limit 2000 delay 50ms 5ms 10% loss 2% 5% duplicate 1% corrupt 0.5% 1% reorder 5% gap 3 rate 10mbit",
            |o| {
                o.limit_packets = 2000;
                o.latency_ns = 50 * MS;
                o.jitter_ns = 5 * MS;
                o.delay_correlation = pct("10");
                o.loss = pct("2");
                o.loss_correlation = pct("5");
                o.duplicate = pct("1");
                o.corrupt = pct("0.5");
                o.corrupt_correlation = pct("1");
                o.reorder = pct("5");
                o.gap = 3;
                o.rate_bytes_per_sec = 1_250_000;
            },
        ),
        netem_at(
            "under_tbf",
            "add dev v0 parent fa17:1 handle fa18: netem delay 10ms",
            handle(0xfa17, 1),
            |o| {
                o.latency_ns = 10 * MS;
            },
        ),
        tbf(
            "rate_burst_limit",
            "add dev v0 root handle fa17: tbf rate 1mbit burst 10000 limit 20000",
            rate(125_000, 10_000, Bytes(20_000)),
        ),
        tbf(
            "peakrate_mtu",
            "add dev v0 root handle fa17: tbf rate 1mbit burst 10000 limit 20000 peakrate 2mbit mtu 1500",
            TbfOptions {
                peakrate_bytes_per_sec: Some(250_000),
                mtu_bytes: Some(1500),
                ..rate(125_000, 10_000, Bytes(20_000))
            },
        ),
        tbf(
            "rate64",
            "add dev v0 root handle fa17: tbf rate 50gbit burst 1mb limit 10mb",
            rate(6_250_000_000, 1 << 20, Bytes(10 << 20)),
        ),
        tbf(
            "prate64",
            "add dev v0 root handle fa17: tbf rate 8gbit burst 1mb limit 10mb peakrate 40gbit mtu 65536",
            TbfOptions {
                peakrate_bytes_per_sec: Some(5_000_000_000),
                mtu_bytes: Some(65_536),
                ..rate(1_000_000_000, 1 << 20, Bytes(10 << 20))
            },
        ),
        tbf(
            "latency",
            "add dev v0 root handle fa17: tbf rate 1mbit burst 10000 latency 50ms",
            rate(125_000, 10_000, LatencyMicros(50_000)),
        ),
        tbf(
            "latency_peakrate",
            "add dev v0 root handle fa17: tbf rate 1mbit burst 10000 latency 50ms peakrate 2mbit mtu 1500",
            TbfOptions {
                peakrate_bytes_per_sec: Some(250_000),
                mtu_bytes: Some(1500),
                ..rate(125_000, 10_000, LatencyMicros(50_000))
            },
        ),
        tbf(
            "mtu_without_peakrate",
            "add dev v0 root handle fa17: tbf rate 10mbit burst 32kb limit 100000 mtu 9000",
            TbfOptions {
                mtu_bytes: Some(9000),
                ..rate(1_250_000, 32 << 10, Bytes(100_000))
            },
        ),
        // 1234567 bit/s is 154320.875 B/s; tc truncates to 154320 (get_rate64 stores a double
        // into a u64). Odd sizes exercise ceil() in every rate-table entry.
        tbf(
            "odd_rate",
            "add dev v0 root handle fa17: tbf rate 1234567bit burst 3333 limit 7777",
            rate(154_320, 3333, Bytes(7777)),
        ),
        Case {
            dir: "del",
            name: "root",
            tc: "del dev v0 root handle fa17:",
            ours: Op::Del {
                parent: TC_H_ROOT,
                handle: TBF,
            },
        },
        Case {
            dir: "del",
            name: "child",
            tc: "del dev v0 parent fa17:1 handle fa18:",
            ours: Op::Del {
                parent: handle(0xfa17, 1),
                handle: NETEM,
            },
        },
    ]
}
