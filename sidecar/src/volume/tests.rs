//! Mount flags, checks of the command line, and which mount a `mount` param names.

use super::*;
use crate::metrics::Metrics;
use faultline_api::iorule::compile_glob;

fn volume(name: &str, mountpoint: &str, app: &[(&str, Option<&str>)]) -> Arc<Volume> {
    let metrics = Arc::new(Metrics::new().mount(name));
    Arc::new(Volume::new(
        name.into(),
        "/src".into(),
        mountpoint.into(),
        app.iter()
            .map(|(p, s)| AppPath {
                path: p.into(),
                sub_path: s.map(str::to_owned),
            })
            .collect(),
        Arc::new(RuleStore::new(name, None, metrics.clone(), Arc::default())),
        metrics,
    ))
}

#[test]
fn mount_flags_parse_or_say_what_is_wrong() {
    assert_eq!(
        "/s:/m:data".parse::<MountSpec>(),
        Ok(MountSpec {
            source: "/s".into(),
            mountpoint: "/m".into(),
            name: Some("data".into())
        })
    );
    assert_eq!("/s:/m".parse::<MountSpec>().map(|m| m.name), Ok(None));
    for bad in [
        "/s",
        "/s:/m:n:x",
        ":/m",
        "/s:/m:",
        "/s:/m:/abs",
        "/s:/m:a b",
    ] {
        let err = bad.parse::<MountSpec>().unwrap_err();
        assert!(err.starts_with(&format!("`{bad}`: ")), "{err}");
    }
    assert_eq!(
        "data/pg=/var/lib/postgresql/".parse::<AppMount>(),
        Ok(AppMount {
            mount: "data".into(),
            sub_path: Some("pg".into()),
            path: "/var/lib/postgresql".into()
        })
    );
    assert_eq!(
        "logs=/var/log/a=b".parse::<AppMount>().map(|a| a.path),
        Ok("/var/log/a=b".into()),
        "only the first `=` separates"
    );
    for (bad, why) in [
        ("data", "expected NAME=PATH"),
        ("data=rel/path", "is not an absolute path"),
        ("data/../x=/p", "must not contain `..`"),
        ("=/p", "must be 1 to 253"),
    ] {
        let err = bad.parse::<AppMount>().unwrap_err();
        assert!(err.contains(why), "{bad}: {err}");
    }
}

#[test]
fn the_command_line_is_checked_as_a_whole() {
    let m = |s: &str| s.parse::<MountSpec>().unwrap();
    let a = |s: &str| s.parse::<AppMount>().unwrap();
    assert_eq!(check(&[], &[]), Err(ConfigError::NoMount));
    assert_eq!(
        check(&[m("/a:/m1:x"), m("/b:/m2:x")], &[]),
        Err(ConfigError::DuplicateName("x".into()))
    );
    assert_eq!(
        check(&[m("/a:/m1"), m("/b:/m1/")], &[]),
        Err(ConfigError::DuplicateMountpoint("/m1".into()))
    );
    let err = check(&[m("/a:/m1:data")], &[a("logs=/var/log")]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "--app-mount logs=…: no mount is named `logs` (names: data)"
    );
    assert_eq!(
        check(&[m("/a:/m1:data"), m("/b:/m2")], &[a("data/x=/srv")]),
        Ok(())
    );
}

#[test]
fn a_mount_is_named_by_volume_mountpoint_or_app_path() {
    let data = volume(
        "data",
        "/faultline/mnt/data",
        &[("/var/lib/db", None), ("/srv", Some("www"))],
    );
    let logs = volume("logs", "/faultline/mnt/logs", &[("/var/log/app", None)]);
    let seed = volume("seed", "/faultline/mnt/seed", &[("/shared", None)]);
    let other = volume("other", "/faultline/mnt/other", &[("/shared", None)]);
    let all = [data.clone(), logs.clone(), seed, other];
    let name =
        |m: Option<&str>| resolve(&all, m).map(|r| (r.volume.name.clone(), r.sub_path.clone()));
    assert_eq!(name(Some("logs")), Ok(("logs".into(), None)));
    assert_eq!(name(Some("/var/lib/db/")), Ok(("data".into(), None)));
    assert_eq!(name(Some("/var//lib/./db")), Ok(("data".into(), None)));
    assert_eq!(name(Some("/srv")), Ok(("data".into(), Some("www".into()))));
    assert_eq!(name(Some("/faultline/mnt/logs")), Ok(("logs".into(), None)));
    let err = resolve(&all, Some("/var/lib")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no mount is named `/var/lib` (mounts: data (at /var/lib/db, /srv), logs (at /var/log/app), seed (at /shared), other (at /shared))"
    );
    assert_eq!(err.violation().rule, "not-found");
    let err = resolve(&all, Some("/shared")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "`/shared` is where apps mount several volumes (seed, other): name the volume instead"
    );
    let err = resolve(&all, None).unwrap_err();
    assert!(
        err.to_string().starts_with(
            "is required: this sidecar serves 4 mounts: data (at /var/lib/db, /srv), logs"
        ),
        "{err}"
    );
    assert_eq!(err.violation().field, "mount");
    assert_eq!(
        resolve(&[logs], None).map(|r| r.volume.name.clone()),
        Ok("logs".into()),
        "one mount: the name may be left out"
    );
}

#[test]
fn rules_for_a_sub_path_mount_move_under_it() {
    let rule = |path: Option<&str>| IoRule {
        path: path.map(str::to_owned),
        ..serde_json::from_value(serde_json::json!({"type": "latency", "latency": "1ms"})).unwrap()
    };
    let moved = |path: Option<&str>, sub: &str| under_sub_path(rule(path), sub).path.unwrap();
    assert_eq!(moved(Some("x/*.db"), "pg"), "pg/x/*.db");
    assert_eq!(moved(Some("/x"), "pg/"), "pg/x");
    assert_eq!(moved(Some("/"), "pg"), "pg");
    let every = compile_glob(&moved(None, "a,b*")).unwrap();
    for (path, hit) in [
        ("a,b*", true),
        ("a,b*/f", true),
        ("a,b*/d/f", true),
        ("a,bc/f", false),
        ("a", false),
        ("other", false),
    ] {
        assert_eq!(every.is_match(path), hit, "{path}");
    }
}
