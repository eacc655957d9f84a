//! Which device of the pod's network namespace a fault goes on: the one the request names, or
//! the one carrying the default route — not a hard-coded `eth0`. Runs on the thread that
//! entered the namespace (`/proc/thread-self/net/*` and `if_nametoindex` answer for it).

use std::path::Path;

/// Why no device could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DeviceError {
    #[error(
        "device `{name}` does not exist in the target's network namespace (devices: {present})"
    )]
    Missing { name: String, present: String },
    #[error(
        "the target's network namespace has no default route to take the device from; name \
         one with `device` (devices: {present})"
    )]
    NoDefaultRoute { present: String },
}

/// `eth0@if12` (how `ip link` shows a veth) → `eth0`.
pub(crate) fn normalize(name: &str) -> &str {
    name.split_once('@').map_or(name, |(dev, _)| dev).trim()
}

/// The interface of the IPv4 default route in `/proc/net/route` text, else of the IPv6 one in
/// `/proc/net/ipv6_route` text.
pub(crate) fn default_route_device(route_v4: &str, route_v6: &str) -> Option<String> {
    let v4 = route_v4.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // Iface Destination Gateway Flags RefCnt Use Metric Mask …; RTF_UP = 0x1.
        let up = f
            .get(3)
            .and_then(|x| u32::from_str_radix(x, 16).ok())
            .unwrap_or(0)
            & 1
            == 1;
        (f.get(1) == Some(&"00000000") && f.get(7) == Some(&"00000000") && up)
            .then(|| f[0].to_owned())
    });
    v4.or_else(|| {
        route_v6.lines().find_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // dst dst_len src src_len next_hop metric refcnt use flags iface
            (f.len() == 10 && f[0].chars().all(|c| c == '0') && f[1] == "00" && f[9] != "lo")
                .then(|| f[9].to_owned())
        })
    })
}

fn devices_present() -> String {
    let mut names: Vec<String> = std::fs::read_dir("/proc/thread-self/net/dev_snmp6")
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        // Without IPv6: the names in /proc/net/dev.
        names = std::fs::read_to_string("/proc/thread-self/net/dev")
            .unwrap_or_default()
            .lines()
            .skip(2)
            .filter_map(|l| l.split(':').next().map(|n| n.trim().to_owned()))
            .collect();
    }
    names.sort();
    names.join(", ")
}

/// The device (name, ifindex) for a fault, in the calling thread's network namespace.
pub(crate) fn resolve(requested: Option<&str>) -> Result<(String, u32), DeviceError> {
    let name = match requested {
        Some(name) => normalize(name).to_owned(),
        None => {
            let read = |p: &str| std::fs::read_to_string(Path::new(p)).unwrap_or_default();
            default_route_device(
                &read("/proc/thread-self/net/route"),
                &read("/proc/thread-self/net/ipv6_route"),
            )
            .ok_or_else(|| DeviceError::NoDefaultRoute {
                present: devices_present(),
            })?
        }
    };
    match nix::net::if_::if_nametoindex(name.as_str()) {
        Ok(index) => Ok((name, index)),
        Err(_) => Err(DeviceError::Missing {
            name,
            present: devices_present(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_default_routes() {
        assert_eq!(normalize("eth0@if12"), "eth0");
        assert_eq!(normalize("net1"), "net1");
        let v4 = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                  net1\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                  eth0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n";
        assert_eq!(default_route_device(v4, "").as_deref(), Some("eth0"));
        let v6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eth1\n";
        assert_eq!(default_route_device("Iface\n", v6).as_deref(), Some("eth1"));
        assert_eq!(default_route_device("Iface\n", ""), None);
    }
}
