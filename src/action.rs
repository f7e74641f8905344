//! What FastNetMon asks for: its fourth argument. A leaf: the spool, the metrics and the
//! notice all name actions, and none of them needs more than this.

/// FastNetMon's ACTION argument (FastNetMon 1.1.x–1.2.9 `notify_script_path` call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Ban,
    Unban,
    /// FastNetMon ≤ 1.2.5 sends this after a ban with a packet dump; it is not a new ban.
    AttackDetails,
}

impl Action {
    /// FastNetMon's spelling, exactly (`Ban` is not `ban`).
    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "ban" => Some(Action::Ban),
            "unban" => Some(Action::Unban),
            "attack_details" => Some(Action::AttackDetails),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Ban => "ban",
            Action::Unban => "unban",
            Action::AttackDetails => "attack_details",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

// In the spool file an action is its name, as FastNetMon spells it.
impl miniserde::Serialize for Action {
    fn begin(&self) -> miniserde::ser::Fragment<'_> {
        miniserde::ser::Fragment::Str(self.as_str().into())
    }
}

miniserde::make_place!(Place);

impl miniserde::de::Visitor for Place<Action> {
    fn string(&mut self, s: &str) -> miniserde::Result<()> {
        self.out = Some(Action::parse(s).ok_or(miniserde::Error)?);
        Ok(())
    }
}

impl miniserde::Deserialize for Action {
    fn begin(out: &mut Option<Self>) -> &mut dyn miniserde::de::Visitor {
        Place::new(out)
    }
}
