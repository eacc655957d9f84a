//! Real FUSE mounts driven from client code: passthrough behaviour, every fault type as an
//! application sees it, filters, ttl, concurrency, crash/restart and shutdown.
//! Skipped (with a printed reason) when not root or without /dev/fuse.

mod common;

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Sidecar, errno, fnv};
use serde_json::json;

/// A program running from the mount cannot be truncated or opened for writing: ETXTBSY as on
/// ext4, with the file and the program intact (the kernel's deny-write check runs before any
/// truncation reaches the source). Repeated, since the old failure was a race.
#[test]
fn a_running_program_is_not_truncated_through_the_mount() {
    require_fuse!();
    let sc = Sidecar::start(1);
    // coreutils' sleep: a dynamically linked program that stays alive until killed.
    let program = std::fs::read("/bin/sleep").unwrap();
    for round in 0..20 {
        let path = sc.m(&format!("prog{round}"));
        std::fs::write(&path, &program).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut child = std::process::Command::new(&path).arg("60").spawn().unwrap();
        for (what, opts) in [
            ("O_WRONLY", OpenOptions::new().write(true).clone()),
            ("O_RDWR", OpenOptions::new().read(true).write(true).clone()),
            ("O_RDONLY|O_TRUNC", {
                let mut o = OpenOptions::new();
                o.read(true).custom_flags(libc::O_TRUNC);
                o
            }),
        ] {
            assert_eq!(
                errno(opts.open(&path)),
                Some(libc::ETXTBSY),
                "round {round}: {what}"
            );
        }
        assert_eq!(
            std::fs::metadata(sc.s(&format!("prog{round}")))
                .unwrap()
                .len(),
            program.len() as u64,
            "round {round}: the source file was truncated under the running program"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "round {round}: the program died"
        );
        child.kill().unwrap();
        child.wait().unwrap();
        std::fs::remove_file(&path).unwrap();
    }
}

#[test]
fn passthrough_basics_and_identity() {
    require_fuse!();
    let sc = Sidecar::start(1);
    std::fs::create_dir_all(sc.m("a/b")).unwrap();
    std::fs::write(sc.m("a/b/f.txt"), b"hello world").unwrap();
    assert_eq!(
        std::fs::read(sc.s("a/b/f.txt")).unwrap(),
        b"hello world",
        "data lands in the source"
    );
    assert_eq!(std::fs::read(sc.m("a/b/f.txt")).unwrap(), b"hello world");

    // Hard links and renames keep one inode; st_ino matches the source.
    std::fs::hard_link(sc.m("a/b/f.txt"), sc.m("a/g.txt")).unwrap();
    let (m1, m2) = (
        std::fs::metadata(sc.m("a/b/f.txt")).unwrap(),
        std::fs::metadata(sc.m("a/g.txt")).unwrap(),
    );
    assert_eq!(m1.ino(), m2.ino());
    assert_eq!(m1.nlink(), 2);
    assert_eq!(
        m1.ino(),
        std::fs::metadata(sc.s("a/b/f.txt")).unwrap().ino()
    );
    std::fs::rename(sc.m("a/g.txt"), sc.m("renamed.txt")).unwrap();
    assert_eq!(
        std::fs::metadata(sc.m("renamed.txt")).unwrap().ino(),
        m1.ino()
    );

    // Symlinks, readdir, setattr, truncate, append.
    std::os::unix::fs::symlink("a/b/f.txt", sc.m("link")).unwrap();
    assert_eq!(
        std::fs::read_link(sc.m("link")).unwrap().to_str(),
        Some("a/b/f.txt")
    );
    assert_eq!(std::fs::read(sc.m("link")).unwrap(), b"hello world");
    let mut names: Vec<String> = std::fs::read_dir(sc.mnt.clone())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["a", "link", "renamed.txt"]);
    std::fs::set_permissions(sc.m("renamed.txt"), std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(
        std::fs::metadata(sc.s("a/b/f.txt")).unwrap().mode() & 0o7777,
        0o600
    );
    let f = OpenOptions::new()
        .append(true)
        .open(sc.m("a/b/f.txt"))
        .unwrap();
    (&f).write_all(b"!").unwrap();
    f.set_len(5).unwrap();
    drop(f);
    assert_eq!(std::fs::read(sc.s("a/b/f.txt")).unwrap(), b"hello");

    // Renames with flags: RENAME_NOREPLACE refuses an existing target.
    std::fs::write(sc.m("x"), b"x").unwrap();
    let cx = std::ffi::CString::new(sc.m("x").as_os_str().as_encoded_bytes()).unwrap();
    let cr = std::ffi::CString::new(sc.m("renamed.txt").as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: valid C strings.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            cx.as_ptr(),
            libc::AT_FDCWD,
            cr.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    assert_eq!(r, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::EEXIST)
    );

    // O_DIRECT is kept: aligned direct I/O through the mount reaches the source.
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut raw = vec![0u8; 3 * 4096];
        let off = raw.as_ptr().align_offset(4096);
        let buf = &mut raw[off..off + 4096];
        buf.fill(0x42);
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_DIRECT)
            .open(sc.m("direct"))
            .unwrap();
        f.write_all_at(buf, 0).unwrap();
        buf.fill(0);
        f.read_exact_at(buf, 0).unwrap();
        assert!(buf.iter().all(|b| *b == 0x42));
        assert_eq!(std::fs::read(sc.s("direct")).unwrap(), vec![0x42u8; 4096]);
    }

    let status = sc.call("status", json!({}));
    assert_eq!(status["mounted"], true);
    assert!(status["ops"]["lookup"]["count"].as_u64().unwrap() > 0);
}

#[test]
fn forget_releases_inodes_the_kernel_drops() {
    require_fuse!(exclusive);
    let sc = Sidecar::start(14);
    std::fs::create_dir(sc.s("many")).unwrap();
    for i in 0..200 {
        std::fs::write(sc.s(&format!("many/f{i}")), b"x").unwrap();
    }
    // readdirplus + stat: every entry looked up through the mount.
    let n = std::fs::read_dir(sc.m("many")).unwrap().count();
    assert_eq!(n, 200);
    for i in 0..200 {
        std::fs::metadata(sc.m(&format!("many/f{i}"))).unwrap();
    }
    let before = sc.call("status", json!({}))["inodes"].as_u64().unwrap();
    assert!(
        before >= 201,
        "{before} inodes known after looking up 200 files"
    );
    // Dropping the kernel's dentries and inodes makes it send FORGET for each: the table must
    // shrink back (lookup counts balanced, readdirplus included).
    std::fs::write("/proc/sys/vm/drop_caches", b"2").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = sc.call("status", json!({}))["inodes"].as_u64().unwrap();
        if now <= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{now} inodes still known after the kernel forgot them"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        sc.call("status", json!({}))["ops"]["forget"]["count"]
            .as_u64()
            .unwrap()
            >= 200
    );
    assert_eq!(
        std::fs::read(sc.m("many/f7")).unwrap(),
        b"x",
        "lookups work again after forget"
    );
}

#[test]
fn opcodes_fuser_does_not_know_get_enosys_and_the_session_lives() {
    require_fuse!();
    let sc = Sidecar::start(15);
    std::fs::write(sc.s("f"), b"abc").unwrap();
    let path = std::ffi::CString::new(sc.m("f").as_os_str().as_encoded_bytes()).unwrap();
    let dir = std::ffi::CString::new(sc.mnt.as_os_str().as_encoded_bytes()).unwrap();
    for _ in 0..2 {
        // statx asking for btime: FUSE_STATX (opcode 52) → ENOSYS → the kernel falls back to
        // GETATTR, and the app gets a normal answer.
        // SAFETY: zeroed statx is a valid out buffer.
        let mut stx: libc::statx = unsafe { std::mem::zeroed() };
        // SAFETY: valid C string and out pointer.
        let r = unsafe {
            libc::statx(
                libc::AT_FDCWD,
                path.as_ptr(),
                0,
                libc::STATX_BASIC_STATS | libc::STATX_BTIME,
                &mut stx,
            )
        };
        assert_eq!(r, 0, "statx: {}", std::io::Error::last_os_error());
        assert_eq!(stx.stx_size, 3);
        // O_TMPFILE: FUSE_TMPFILE (opcode 51) → ENOSYS → EOPNOTSUPP for the app.
        // SAFETY: valid C string.
        let fd = unsafe { libc::open(dir.as_ptr(), libc::O_TMPFILE | libc::O_RDWR, 0o600) };
        assert_eq!(fd, -1);
        assert_eq!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::EOPNOTSUPP)
        );
    }
    assert_eq!(
        std::fs::read(sc.m("f")).unwrap(),
        b"abc",
        "the session kept running"
    );
    assert_eq!(sc.call("status", json!({}))["mounted"], true);
}

#[test]
fn fault_errno_and_weights() {
    require_fuse!();
    let sc = Sidecar::start(2);
    std::fs::create_dir(sc.s("data")).unwrap();
    std::fs::write(sc.s("data/a.db"), vec![7u8; 8192]).unwrap();
    std::fs::write(sc.s("data/b.txt"), b"fine").unwrap();
    sc.set_rules(json!([{"id": "eio", "type": "fault", "path": "data/*.db", "methods": ["READ"], "faults": [{"errno": 5}]}]));
    let f = File::open(sc.m("data/a.db")).unwrap();
    let mut buf = [0u8; 4096];
    assert_eq!(
        errno(f.read_at(&mut buf, 0)),
        Some(libc::EIO),
        "read fails with the rule's errno"
    );
    assert_eq!(
        std::fs::read(sc.m("data/b.txt")).unwrap(),
        b"fine",
        "other paths untouched"
    );

    // Weighted errnos on open: both appear, in proportion.
    sc.set_rules(
        json!([{"type": "fault", "path": "data/b.txt", "methods": ["open"],
        "faults": [{"errno": 28, "weight": 3}, {"errno": 13, "weight": 1}]}]),
    );
    let (mut enospc, mut eacces) = (0, 0);
    for _ in 0..200 {
        match errno(File::open(sc.m("data/b.txt"))) {
            Some(libc::ENOSPC) => enospc += 1,
            Some(libc::EACCES) => eacces += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        enospc > eacces && eacces > 20,
        "weights 3:1 → {enospc}:{eacces}"
    );
    let list = sc.call("rules.list", json!({}));
    assert_eq!(list["rules"][0]["hits"], 200);
}

#[test]
fn cached_reads_do_not_hide_a_read_fault() {
    require_fuse!();
    let sc = Sidecar::start(3);
    std::fs::write(sc.s("f"), vec![1u8; 65536]).unwrap();
    let f = File::open(sc.m("f")).unwrap();
    let mut buf = vec![0u8; 65536];
    f.read_exact_at(&mut buf, 0).unwrap();
    f.read_exact_at(&mut buf, 0).unwrap(); // now in the page cache (KEEP_CACHE)
    sc.set_rules(
        json!([{"type": "fault", "path": "f", "methods": ["read"], "faults": [{"errno": 5}]}]),
    );
    assert_eq!(
        errno(f.read_at(&mut buf, 0)),
        Some(libc::EIO),
        "already-open handle sees the fault"
    );
    assert_eq!(
        errno(std::fs::read(sc.m("f"))),
        Some(libc::EIO),
        "new handle sees the fault"
    );
    sc.call("rules.clear", json!({}));
    assert_eq!(std::fs::read(sc.m("f")).unwrap().len(), 65536);
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A latency rule delays each matching read once by the asked time: at least 25 ms over the
/// interleaved undelayed baseline, and less than twice it (a delay applied twice, or per page,
/// would be ≥ 50 ms). The bounds are semantic, not tighter than the machine's noise: under load
/// a read took 27.5 ms here.
#[test]
fn latency_delays_each_matching_read_once() {
    require_fuse!(exclusive);
    let sc = Sidecar::start(4);
    std::fs::write(sc.s("slow"), vec![2u8; 4096]).unwrap();
    std::fs::write(sc.s("base"), vec![2u8; 4096]).unwrap();
    sc.set_rules(json!([
        {"type": "latency", "path": "slow", "methods": ["read"], "latency": "25ms"},
        // Same path through the daemon for the baseline (direct_io), no delay.
        {"type": "fault", "path": "base", "methods": ["read"], "percent": 0, "faults": [{"errno": 5}]},
    ]));
    let slow = File::open(sc.m("slow")).unwrap();
    let base = File::open(sc.m("base")).unwrap();
    let time_read = |f: &File| {
        let t = Instant::now();
        f.read_exact_at(&mut [0u8; 4096], 0).unwrap();
        t.elapsed()
    };
    // Interleaved, so machine noise hits both series alike; the injected delay is the
    // difference of the medians.
    let (mut slow_t, mut base_t) = (Vec::new(), Vec::new());
    for _ in 0..41 {
        slow_t.push(time_read(&slow));
        base_t.push(time_read(&base));
    }
    let (p50, base50) = (median(slow_t), median(base_t));
    let injected = p50.saturating_sub(base50);
    let want = Duration::from_millis(25);
    assert!(p50 >= want, "p50 {p50:?} below the asked delay");
    assert!(
        injected >= want - Duration::from_millis(2) && injected < 2 * want,
        "p50 {p50:?} − baseline p50 {base50:?} = {injected:?}: not one 25 ms delay"
    );
    // Other files are not delayed, even while delayed reads are in flight.
    std::fs::write(sc.s("fast"), b"x").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let slow_path = sc.m("slow");
    let stop2 = stop.clone();
    let bg = std::thread::spawn(move || {
        let f = File::open(slow_path).unwrap();
        while !stop2.load(Ordering::Relaxed) {
            let _ = f.read_at(&mut [0u8; 16], 0);
        }
    });
    let t = Instant::now();
    for _ in 0..20 {
        std::fs::read(sc.m("fast")).unwrap();
    }
    // Twenty reads of an unmatched file: delayed by the rule they would take ≥ 500 ms.
    assert!(
        t.elapsed() < 20 * want,
        "unmatched I/O stalled: {:?}",
        t.elapsed()
    );
    stop.store(true, Ordering::Relaxed);
    bg.join().unwrap();
}

#[test]
fn attr_override_is_seen_and_reverts() {
    require_fuse!();
    let sc = Sidecar::start(5);
    std::fs::write(sc.s("a"), b"abc").unwrap();
    assert_eq!(std::fs::metadata(sc.m("a")).unwrap().len(), 3);
    sc.set_rules(json!([{"type": "attrOverride", "path": "a",
        "attr": {"perm": 0o400, "size": 12345, "uid": 4242, "nlink": 7, "mtime": {"sec": 1000000000}}}]));
    let m = std::fs::metadata(sc.m("a")).unwrap();
    assert_eq!(
        (m.mode() & 0o7777, m.len(), m.uid(), m.nlink(), m.mtime()),
        (0o400, 12345, 4242, 7, 1_000_000_000)
    );
    sc.call("rules.clear", json!({}));
    let m = std::fs::metadata(sc.m("a")).unwrap();
    assert_eq!(
        (m.len(), m.uid()),
        (3, 0),
        "real attributes right after clear"
    );
}

#[test]
fn mistake_corruption_is_bounded() {
    require_fuse!();
    let sc = Sidecar::start(6);
    let orig: Vec<u8> = (0..65536u32).map(|i| (i % 253) as u8 | 1).collect();
    std::fs::write(sc.s("m"), &orig).unwrap();
    sc.set_rules(json!([{"type": "mistake", "path": "m", "methods": ["read"],
        "mistake": {"filling": "zero", "maxOccurrences": 2, "maxLength": 16}}]));
    let f = File::open(sc.m("m")).unwrap();
    let mut total = 0;
    for chunk in 0..16u64 {
        let mut buf = vec![0u8; 4096];
        f.read_exact_at(&mut buf, chunk * 4096).unwrap();
        let want = &orig[(chunk * 4096) as usize..][..4096];
        let diff = buf.iter().zip(want).filter(|(a, b)| a != b).count();
        assert!(
            (1..=32).contains(&diff),
            "chunk {chunk}: {diff} bytes corrupted (bound 2×16)"
        );
        assert!(
            buf.iter().zip(want).all(|(a, b)| a == b || *a == 0),
            "zero filling"
        );
        total += diff;
    }
    assert!(total >= 16);
    assert_eq!(
        std::fs::read(sc.s("m")).unwrap(),
        orig,
        "read mistakes never touch the source"
    );

    // Write mistakes corrupt what reaches the source, within the bound.
    sc.set_rules(
        json!([{"type": "mistake", "path": "w", "methods": ["write"],
        "mistake": {"filling": "random", "maxOccurrences": 1, "maxLength": 8}}]),
    );
    let data = vec![0xAAu8; 4096];
    let f = File::create(sc.m("w")).unwrap();
    f.write_all_at(&data, 0).unwrap();
    drop(f);
    let got = std::fs::read(sc.s("w")).unwrap();
    let diff = got.iter().zip(&data).filter(|(a, b)| a != b).count();
    assert!(diff <= 8, "{diff} bytes corrupted (bound 8)");
}

#[test]
fn filters_glob_methods_percent() {
    require_fuse!();
    let sc = Sidecar::start(7);
    std::fs::create_dir_all(sc.s("logs/deep/er")).unwrap();
    for p in ["logs/a.log", "logs/deep/er/b.log", "top.log"] {
        std::fs::write(sc.s(p), b"data").unwrap();
    }
    // `*` stays in one directory.
    sc.set_rules(json!([{"type": "fault", "path": "logs/*.log", "methods": ["Open"], "faults": [{"errno": 1}]}]));
    assert_eq!(errno(File::open(sc.m("logs/a.log"))), Some(libc::EPERM));
    assert!(File::open(sc.m("logs/deep/er/b.log")).is_ok());
    assert!(File::open(sc.m("top.log")).is_ok());
    // `**` crosses directories; the method filter is case-insensitive and exact.
    sc.set_rules(json!([{"type": "fault", "path": "logs/**", "methods": ["OPEN"], "faults": [{"errno": 1}]}]));
    assert_eq!(
        errno(File::open(sc.m("logs/deep/er/b.log"))),
        Some(libc::EPERM)
    );
    assert!(
        std::fs::metadata(sc.m("logs/deep/er/b.log")).is_ok(),
        "getattr not filtered in"
    );
    // percent: 30 % of reads fail, statistically, with a fixed seed.
    sc.set_rules(json!([{"type": "fault", "path": "top.log", "methods": ["read"], "percent": 30, "faults": [{"errno": 5}]}]));
    let f = File::open(sc.m("top.log")).unwrap();
    let n = 1000;
    let failed = (0..n)
        .filter(|_| f.read_at(&mut [0u8; 4], 0).is_err())
        .count();
    // Binomial(1000, 0.3): sd ≈ 14.5; allow ~5 sd.
    assert!(
        (230..=370).contains(&failed),
        "{failed} of {n} failed, expected ~300"
    );
}

#[test]
fn ttl_rules_expire_by_themselves() {
    require_fuse!();
    let sc = Sidecar::start(8);
    std::fs::write(sc.s("t"), b"t").unwrap();
    let r = sc.call("rules.add", json!({"rule": {"type": "fault", "path": "t", "methods": ["open"], "ttl": "300ms", "faults": [{"errno": 5}]}}));
    assert!(r["id"].is_string());
    assert_eq!(errno(File::open(sc.m("t"))), Some(libc::EIO));
    std::thread::sleep(Duration::from_millis(350));
    assert!(
        File::open(sc.m("t")).is_ok(),
        "expired rule no longer applies"
    );
    let deadline = Instant::now() + Duration::from_secs(2);
    while !sc.call("rules.list", json!({}))["rules"]
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "expired rule still listed");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn eight_threads_of_io_while_rules_change() {
    require_fuse!();
    let sc = Sidecar::start(9);
    std::fs::create_dir(sc.s("work")).unwrap();
    std::fs::create_dir(sc.s("other")).unwrap();
    std::fs::write(sc.s("other/x"), b"x").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for t in 0..8u64 {
        let dir = sc.m("work");
        let stop = stop.clone();
        workers.push(std::thread::spawn(move || {
            let mut rounds = 0u64;
            while !stop.load(Ordering::Relaxed) || rounds < 5 {
                let path = dir.join(format!("t{t}-{}", rounds % 4));
                let data: Vec<u8> = (0..(16384 + t * 1000 + rounds))
                    .map(|i| (i * 31 + t + rounds) as u8)
                    .collect();
                std::fs::write(&path, &data).unwrap();
                let mut back = Vec::new();
                File::open(&path).unwrap().read_to_end(&mut back).unwrap();
                assert_eq!(
                    fnv(&back),
                    fnv(&data),
                    "thread {t} round {rounds}: checksum mismatch"
                );
                let _ = std::fs::metadata(&path).unwrap();
                if rounds % 4 == 3 {
                    std::fs::remove_file(&path).unwrap();
                }
                rounds += 1;
            }
            rounds
        }));
    }
    let start = Instant::now();
    let mut changes = 0;
    while start.elapsed() < Duration::from_secs(3) {
        // Rules that never match the workers' files: they must see no delay, error or corruption.
        sc.set_rules(json!([
            {"type": "latency", "path": "other/**", "latency": "50ms"},
            {"type": "fault", "path": "other/*", "faults": [{"errno": 5}]},
            {"type": "mistake", "path": "other/x", "mistake": {"filling": "random", "maxOccurrences": 3, "maxLength": 100}},
            {"type": "attrOverride", "path": "other/x", "attr": {"size": 1}},
        ]));
        sc.call("rules.clear", json!({}));
        changes += 2;
    }
    stop.store(true, Ordering::Relaxed);
    let rounds: u64 = workers
        .into_iter()
        .map(|w| w.join().expect("worker panicked"))
        .sum();
    assert!(
        rounds >= 40 && changes >= 20,
        "rounds {rounds}, rule changes {changes}"
    );
}

#[test]
fn kill_9_then_restart_on_the_same_mountpoint() {
    require_fuse!();
    let mut sc = Sidecar::start(10);
    std::fs::write(sc.s("keep"), b"survives").unwrap();
    assert_eq!(std::fs::read(sc.m("keep")).unwrap(), b"survives");
    sc.signal(libc::SIGKILL);
    sc.wait_exit(Duration::from_secs(5));
    assert_eq!(
        errno(std::fs::metadata(sc.m("keep"))),
        Some(libc::ENOTCONN),
        "stale mount after kill -9"
    );
    sc.spawn(10, &[]);
    assert_eq!(std::fs::read(sc.m("keep")).unwrap(), b"survives");
    assert!(
        sc.logs().contains("stale FUSE mount"),
        "restart detached the stale mount"
    );
}

#[test]
fn second_instance_on_a_live_mount_is_refused() {
    require_fuse!();
    let sc = Sidecar::start(11);
    let out = std::process::Command::new(common::bin())
        .arg("--source")
        .arg(&sc.source)
        .arg("--mountpoint")
        .arg(&sc.mnt)
        .arg("--rpc-listen")
        .arg(common::free_port().to_string())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is busy"), "{err}");
    assert!(
        std::fs::metadata(sc.m(".")).is_ok(),
        "first instance unharmed"
    );
}

#[test]
fn sigterm_with_inflight_10s_latency_unmounts_fast() {
    require_fuse!(exclusive);
    let mut sc = Sidecar::start(12);
    std::fs::write(sc.s("hang"), b"zzz").unwrap();
    sc.set_rules(
        json!([{"type": "latency", "path": "hang", "methods": ["read"], "latency": "10s"}]),
    );
    let p = sc.m("hang");
    let reader = std::thread::spawn(move || {
        let t = Instant::now();
        let r = std::fs::read(p);
        (t.elapsed(), r.map(|v| v.len()))
    });
    let deadline = Instant::now() + Duration::from_secs(3);
    while sc.call("status", json!({}))["delayedOps"].as_u64() != Some(1) {
        assert!(Instant::now() < deadline, "read never got delayed");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(common::http_get(sc.addr, "/ready").unwrap().0, 200);
    sc.signal(libc::SIGTERM);
    let took = sc.wait_exit(Duration::from_secs(5));
    assert!(took < Duration::from_secs(1), "exit took {took:?}");
    let (read_took, _) = reader.join().unwrap();
    assert!(
        read_took < Duration::from_secs(2),
        "the delayed read ended with the shutdown"
    );
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(!mounts.contains(sc.mnt.to_str().unwrap()), "still mounted");
    // A clean stop: the woken read is answered before the unmount, so fuser does not log a
    // failed reply ("Failed to send FUSE reply") as an ERROR.
    let logs = sc.logs();
    assert!(!logs.contains("ERROR"), "{logs}");
}

#[test]
fn probe_subcommand_follows_the_mount() {
    require_fuse!();
    let mut sc = Sidecar::start(13);
    let probe = |addr: std::net::SocketAddr| {
        std::process::Command::new(common::bin())
            .args(["probe", "--rpc-listen", &addr.to_string()])
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(probe(sc.addr));
    sc.signal(libc::SIGTERM);
    sc.wait_exit(Duration::from_secs(5));
    assert!(!probe(sc.addr), "probe fails once the sidecar is gone");
}
