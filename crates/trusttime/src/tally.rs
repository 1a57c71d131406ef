//! How each source took part in a round, in the one wording that `sync`, the daemon's log,
//! `sources` and `status` share: *answered* (a usable reply), *rejected* (it replied, and the
//! reply was refused, with why) or *silent* (no reply at all).

use std::fmt;

use trusttime_core::ntp::Reject;

/// How one source took part in a round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// It gave a usable reply (whether or not it then agreed with the others).
    Answered,
    /// It replied, and the reply was refused: why, in a few words.
    Rejected(String),
    /// Nothing came back (lost, unreachable, no DNS address, or not needed once the majority
    /// had decided).
    Silent,
}

impl Answer {
    /// `answered`, `rejected` or `silent` (the JSON word).
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Answer::Answered => "answered",
            Answer::Rejected(_) => "rejected",
            Answer::Silent => "silent",
        }
    }

    /// Why it was rejected, if it was.
    #[must_use]
    pub fn why(&self) -> Option<&str> {
        match self {
            Answer::Rejected(w) => Some(w),
            _ => None,
        }
    }

    /// A reply refused for `r`.
    #[must_use]
    pub fn rejected(r: &Reject) -> Answer {
        Answer::Rejected(reject_words(r))
    }
}

/// A few words for why an NTP reply was refused.
#[must_use]
pub fn reject_words(r: &Reject) -> String {
    match r {
        Reject::BelowFloor { .. } => "below the floor".into(),
        Reject::KissOfDeath(k) => format!("Kiss-o'-Death {k}"),
        Reject::Unsynchronized | Reject::StratumTooHigh { .. } => "server unsynchronised".into(),
        Reject::RootDistanceTooLarge { .. } => "root distance too large".into(),
        Reject::ReferenceAfterTransmit => "reference time after transmit time".into(),
        Reject::TimestampsReversed => "timestamps reversed".into(),
        other => other.as_str().replace('_', " "),
    }
}

/// The counts of one round.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Sources asked.
    pub sources: usize,
    /// Sources with a usable reply.
    pub answered: usize,
    /// Why replies were refused, each with how many (in order of first appearance).
    pub rejected: Vec<(String, usize)>,
    /// Sources that sent nothing.
    pub silent: usize,
}

impl Tally {
    /// Counts `answers`.
    pub fn of<'a>(answers: impl IntoIterator<Item = &'a Answer>) -> Tally {
        let mut t = Tally::default();
        for a in answers {
            t.sources += 1;
            match a {
                Answer::Answered => t.answered += 1,
                Answer::Silent => t.silent += 1,
                Answer::Rejected(why) => match t.rejected.iter_mut().find(|(w, _)| w == why) {
                    Some((_, n)) => *n += 1,
                    None => t.rejected.push((why.clone(), 1)),
                },
            }
        }
        t
    }

    /// Sources whose reply was refused.
    #[must_use]
    pub fn rejected_count(&self) -> usize {
        self.rejected.iter().map(|(_, n)| n).sum()
    }
}

/// `3 sources: 1 answered, 1 rejected (below the floor), 1 silent`.
impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} source{}: {} answered, {} rejected",
            self.sources,
            if self.sources == 1 { "" } else { "s" },
            self.answered,
            self.rejected_count()
        )?;
        if !self.rejected.is_empty() {
            let whys: Vec<String> = self
                .rejected
                .iter()
                .map(|(w, n)| {
                    if *n == 1 {
                        w.clone()
                    } else {
                        format!("{w} x{n}")
                    }
                })
                .collect();
            write!(f, " ({})", whys.join("; "))?;
        }
        write!(f, ", {} silent", self.silent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trusttime_core::UnixTime;

    #[test]
    fn one_wording_for_every_mix() {
        let floor = Answer::rejected(&Reject::BelowFloor {
            claimed: UnixTime::EPOCH,
            floor: UnixTime::EPOCH,
        });
        assert_eq!(floor.why(), Some("below the floor"));
        assert_eq!(
            Tally::of(std::slice::from_ref(&floor)).to_string(),
            "1 source: 0 answered, 1 rejected (below the floor), 0 silent"
        );
        assert_eq!(
            Tally::of(&[Answer::Silent, Answer::Silent, Answer::Silent]).to_string(),
            "3 sources: 0 answered, 0 rejected, 3 silent"
        );
        let t = Tally::of(&[
            Answer::Answered,
            floor.clone(),
            Answer::Silent,
            floor,
            Answer::rejected(&Reject::Unsynchronized),
        ]);
        assert_eq!(
            t.to_string(),
            "5 sources: 1 answered, 3 rejected (below the floor x2; server unsynchronised), 1 silent"
        );
        assert_eq!(t.rejected_count(), 3);
        assert_eq!(Answer::Silent.as_str(), "silent");
    }
}
