//! NetworkChaos validation: every violation with its path, and the warnings for what Chaos Mesh
//! accepts and Faultline reads its own way.
//!
//! Blocks and actions, as in Chaos Mesh: the netem actions (`netem`, `delay`, `loss`,
//! `duplicate`, `corrupt`, `rate`) apply *every* netem block present — the action only says
//! which one is required — while `bandwidth` uses only its block and `partition` none.

use super::{Direction, NetworkChaosAction as A, NetworkChaosSpec};
use crate::convert::tc_values::{self, TcValues};
use crate::peer::Peer;
use crate::validate::{self, Findings, Note, Rule, Violation, Warning, child, index};

/// The netem blocks of a spec, by field name, and whether each is present.
fn netem_blocks(spec: &NetworkChaosSpec) -> [(&'static str, bool); 5] {
    [
        ("delay", spec.delay.is_some()),
        ("loss", spec.loss.is_some()),
        ("duplicate", spec.duplicate.is_some()),
        ("corrupt", spec.corrupt.is_some()),
        ("rate", spec.rate.is_some()),
    ]
}

/// Whether `action` applies netem blocks.
pub(crate) fn is_netem(action: A) -> bool {
    !matches!(action, A::Bandwidth | A::Partition)
}

const NETEM_ACTIONS: &str = "netem, delay, loss, duplicate, corrupt and rate";

/// An `externalTargets` entry.
fn external_target(value: &str) -> Result<Peer, Rule> {
    value
        .parse::<Peer>()
        .map_err(|err| Rule::InvalidExternalTarget {
            value: value.to_owned(),
            reason: err.to_string(),
        })
}

impl NetworkChaosSpec {
    /// Every violation of the spec, with its field path.
    pub fn validate(&self) -> Vec<Violation> {
        self.checked(Some(self.action)).1.into_vec()
    }

    /// What is admitted but read in Faultline's way, with its field path.
    pub fn warnings(&self) -> Vec<Warning> {
        self.checked(Some(self.action)).1.into_parts().1
    }

    /// The parsed `externalTargets`, when every entry is valid (in order).
    pub(crate) fn peers(&self) -> Option<Vec<Peer>> {
        self.external_targets
            .iter()
            .map(|t| external_target(t).ok())
            .collect()
    }

    /// The tc values parsed while validating, and the findings. The conversion to qdisc
    /// parameters uses these values, so it never parses a field a second time. `action` is
    /// `None` when it could not be read: the rules that depend on it are skipped.
    pub(crate) fn checked(&self, action: Option<A>) -> (TcValues, Findings) {
        let mut f = Findings::default();
        self.scope.validate_at("spec", &mut f);
        let tc = tc_values::check(self, &mut f);
        if let Some(action) = action {
            self.check_action(action, &mut f);
        }
        if let Some(target) = &self.target {
            target.validate_at("spec.target", &mut f);
        }
        for (i, ext) in self.external_targets.iter().enumerate() {
            f.check(
                index("spec.externalTargets", i),
                external_target(ext).map(|_| ()),
            );
        }
        for (field, device) in [
            ("device", &self.device),
            ("targetDevice", &self.target_device),
        ] {
            if let Some(device) = device {
                f.check(child("spec", field), validate::device_name(device));
            }
        }
        if let Some(duration) = &self.duration {
            crate::iorule::check_positive_duration(&mut f, "spec.duration", duration);
        }
        (tc, f)
    }

    /// The rules that depend on the action: its block, the blocks it ignores, and the
    /// direction/target/externalTargets combinations.
    fn check_action(&self, action: A, f: &mut Findings) {
        let name = action.as_str();
        let required = |what: &str| Rule::Required {
            because: format!("for action `{name}` ({what})"),
        };
        match action {
            A::Netem if netem_blocks(self).iter().all(|(_, present)| !present) => {
                f.push("spec", Rule::NetemWithoutEffect)
            }
            A::Delay if self.delay.is_none() => f.push("spec.delay", required("the delay")),
            A::Loss if self.loss.is_none() => f.push("spec.loss", required("the loss")),
            A::Duplicate if self.duplicate.is_none() => {
                f.push("spec.duplicate", required("the duplication"))
            }
            A::Corrupt if self.corrupt.is_none() => {
                f.push("spec.corrupt", required("the corruption"))
            }
            A::Rate if self.rate.is_none() => f.push("spec.rate", required("the rate")),
            A::Bandwidth if self.bandwidth.is_none() => {
                f.push("spec.bandwidth", required("the cap"))
            }
            _ => {}
        }
        let ignored = |owners: &str| Note::FieldIgnored {
            action: name.to_owned(),
            owners: owners.to_owned(),
        };
        if !is_netem(action) {
            for (block, present) in netem_blocks(self) {
                if present {
                    f.warn(child("spec", block), ignored(NETEM_ACTIONS));
                }
            }
        }
        if action != A::Bandwidth && self.bandwidth.is_some() {
            f.warn("spec.bandwidth", ignored("bandwidth"));
        }
        let direction = self.direction.unwrap_or(Direction::To);
        if action == A::Partition {
            // Chaos Mesh cuts the pods off from everything then; so do we, and say so.
            if self.target.is_none() && self.external_targets.is_empty() {
                f.warn("spec", Note::PartitionEverything);
            }
        } else if direction != Direction::To {
            if self.target.is_none() {
                f.push(
                    "spec.direction",
                    Rule::DirectionNeedsTarget {
                        direction: direction.as_str().into(),
                        because:
                            "for tc actions: traffic from the pods is shaped on the target's side"
                                .into(),
                    },
                );
            }
            if !self.external_targets.is_empty() {
                f.push(
                    "spec.externalTargets",
                    Rule::ExternalTargetsNeedDirectionTo {
                        action: name.into(),
                    },
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_targets() {
        for ok in [
            "10.0.0.1",
            "10.0.0.0/8",
            "::1",
            "fd00::/64",
            "example.com",
            "api.example.com.",
            "1.1.1.1:80",
            "example.com:443",
            "10.0.0.0/8:22",
            "[fd00::1]:80",
            "[fd00::/64]:80",
        ] {
            assert!(external_target(ok).is_ok(), "{ok}");
        }
        for bad in [
            "10.0.0.0/33",
            "fd00::/129",
            "exa mple.com",
            "-x.com",
            "",
            "a..b",
            "1.2.3.4/x",
            "1.1.1.1:0",
            "1.1.1.1:70000",
            "[fd00::1]",
            "10.0.0.300",
        ] {
            assert!(
                matches!(
                    external_target(bad),
                    Err(Rule::InvalidExternalTarget { .. })
                ),
                "{bad}"
            );
        }
    }
}
