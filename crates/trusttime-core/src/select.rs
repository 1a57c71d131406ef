//! Source selection: which sources agree, and when to stop waiting for the rest.
//!
//! Every answering source gives an *offset interval*: server time minus local time, plus or
//! minus its error bound (half the round trip plus the server's root distance). A source that
//! tells the truth has the true offset inside its interval, so the true offset lies where the
//! intervals of the truthful sources overlap. [`select`] finds the point covered by the most
//! intervals (Marzullo's algorithm); the sources covering it agree, the others are
//! falsetickers. A result needs `min_agree` sources *and* a strict majority of the sources
//! that answered, so two disjoint groups can never both win.
//!
//! [`decide`] applies this to an exchange still in progress: it says `Wait` while a pending
//! reply could still change the outcome, and decides as soon as it cannot. The caller keeps one
//! [`Outcome`] per source; at most [`MAX_SOURCES`] sources take part.

use core::fmt;

use crate::time::SignedDuration;

/// The most sources one selection can take (membership is a `u32` bit set).
pub const MAX_SOURCES: usize = 32;

/// An interval of offsets (server time minus local time), `lo <= hi`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffsetInterval {
    /// Lowest plausible offset.
    pub lo: SignedDuration,
    /// Highest plausible offset.
    pub hi: SignedDuration,
}

impl OffsetInterval {
    /// `offset ± error` (a negative error is treated as zero).
    #[must_use]
    pub fn around(offset: SignedDuration, error: SignedDuration) -> Self {
        let e = error.abs();
        OffsetInterval {
            lo: offset.saturating_sub(e),
            hi: offset.saturating_add(e),
        }
    }
    /// The middle of the interval.
    #[must_use]
    pub fn midpoint(&self) -> SignedDuration {
        SignedDuration::from_nanos(
            ((i128::from(self.lo.as_nanos()) + i128::from(self.hi.as_nanos())) / 2) as i64,
        )
    }
    /// Half the width.
    #[must_use]
    pub fn radius(&self) -> SignedDuration {
        (self.hi.saturating_sub(self.lo)).half()
    }
}

/// What is known of one source in an exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Still waiting for it.
    Pending,
    /// It answered with this offset interval.
    Reply(OffsetInterval),
    /// It will not answer usefully (no reply, invalid reply, Kiss-o'-Death).
    Failed,
}

/// The sources that agree and what they agree on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Selection {
    /// Bit `i` set when source `i` agreed.
    pub agreed: u32,
    /// How many agreed.
    pub count: u8,
    /// The intersection of the agreeing intervals: the true offset lies here if they are honest.
    pub interval: OffsetInterval,
    /// The best single estimate: the centre of `interval`, so that `offset ± radius` is
    /// exactly the interval reported (a mean of the sources' offsets could sit near one end
    /// and make `offset ± error` exclude the truth).
    pub offset: SignedDuration,
}

impl Selection {
    /// True when source `i` agreed.
    #[must_use]
    pub fn is_member(&self, i: usize) -> bool {
        i < MAX_SOURCES && self.agreed & (1 << i) != 0
    }
}

/// Why no consensus was reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoConsensus {
    /// Fewer sources gave a usable answer than `min_agree` needs (sources still pending are
    /// not counted: they have not answered).
    TooFewReplies {
        /// Sources that gave a usable answer.
        replies: u8,
        /// Sources needed.
        needed: u8,
    },
    /// Enough answered, but not enough of them agree.
    Disagreement {
        /// The largest group that agrees.
        largest_group: u8,
        /// Sources that answered.
        replies: u8,
        /// Sources needed.
        needed: u8,
    },
    /// More than [`MAX_SOURCES`] sources, or none at all.
    BadSourceCount,
}

impl fmt::Display for NoConsensus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            NoConsensus::TooFewReplies { replies, needed } => {
                write!(
                    f,
                    "only {replies} source(s) gave a usable answer; {needed} must agree"
                )
            }
            NoConsensus::Disagreement {
                largest_group,
                replies,
                needed,
            } => write!(
                f,
                "sources disagree: the largest group that agrees has {largest_group} of {replies} \
                 answering source(s); {needed} and a strict majority are needed"
            ),
            NoConsensus::BadSourceCount => {
                write!(f, "between 1 and {MAX_SOURCES} sources must be configured")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for NoConsensus {}

/// The state of an exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// A pending source could still change the outcome: keep waiting.
    Wait,
    /// Consensus: final, whatever the pending sources say.
    Agreed(Selection),
    /// No consensus is possible any more.
    Failed(NoConsensus),
}

/// The default number of sources that must agree: 2 when 3 or more are configured, else 1.
#[must_use]
pub const fn default_min_agree(configured: usize) -> u8 {
    if configured >= 3 {
        2
    } else {
        1
    }
}

/// Marzullo's algorithm over the answering sources: the largest group whose intervals share
/// a point, if it has at least `min_agree` members and a strict majority of the replies.
///
/// # Errors
/// [`NoConsensus`] says why no group qualifies.
pub fn select(outcomes: &[Outcome], min_agree: u8) -> Result<Selection, NoConsensus> {
    let (best, replies) = largest_group(outcomes)?;
    let needed = min_agree.max(1);
    if replies < needed {
        return Err(NoConsensus::TooFewReplies { replies, needed });
    }
    match best {
        Some(sel) if sel.count >= needed && u16::from(sel.count) * 2 > u16::from(replies) => {
            Ok(sel)
        }
        other => Err(NoConsensus::Disagreement {
            largest_group: other.map_or(0, |s| s.count),
            replies,
            needed,
        }),
    }
}

/// Decides an exchange as early as possible: `Agreed` once a group has `min_agree` members
/// and would still be a strict majority even if every pending source answered against it;
/// `Failed` once nothing pending can make a group qualify.
#[must_use]
pub fn decide(outcomes: &[Outcome], min_agree: u8) -> Decision {
    let pending = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Pending))
        .count() as u8;
    let (best, replies) = match largest_group(outcomes) {
        Ok(x) => x,
        Err(e) => return Decision::Failed(e),
    };
    let needed = min_agree.max(1);
    let count = best.map_or(0, |s| s.count);
    if let Some(sel) = best {
        let others = replies - count;
        if count >= needed && u16::from(count) > u16::from(others) + u16::from(pending) {
            return Decision::Agreed(sel);
        }
    }
    if pending == 0 {
        return match select(outcomes, min_agree) {
            Ok(sel) => Decision::Agreed(sel),
            Err(e) => Decision::Failed(e),
        };
    }
    // Even if every pending source joined the largest group it could not reach `needed`.
    if u16::from(count) + u16::from(pending) < u16::from(needed) {
        return Decision::Failed(if replies + pending < needed {
            NoConsensus::TooFewReplies { replies, needed }
        } else {
            NoConsensus::Disagreement {
                largest_group: count,
                replies,
                needed,
            }
        });
    }
    Decision::Wait
}

/// How the authenticated and the plain sources decided together (see [`combine`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Combination {
    /// A pending source could still change the outcome: keep waiting.
    Wait,
    /// Consensus of one group. Bits of `selection.agreed` are indices into the outcomes given.
    Agreed {
        /// The consensus.
        selection: Selection,
        /// It rests on authenticated sources (NTS, Roughtime).
        authenticated: bool,
        /// Authenticated sources are configured but did not agree, so plain NTP decided: a
        /// driver must not treat this as authenticated time, and must not let it through
        /// where authenticated time is required (no silent downgrade).
        downgraded: bool,
    },
    /// No consensus is possible any more.
    Failed(NoConsensus),
}

/// The one combination policy, for `sync` and the daemon: **authenticated sources first**.
/// When any source is authenticated (`authenticated[i]`), the authenticated ones decide
/// whenever they reach a consensus among themselves (`min_auth` of them, and a strict majority
/// of those that answered); a plain NTP source outside it is a falseticker. Only when they
/// cannot does plain NTP decide (`min_plain`), and the result says it was a downgrade. Each
/// group is judged by [`decide`] as if the other group were not there. Sources the driver
/// counts as duplicates of another (the same server under two names) should be given as
/// [`Outcome::Failed`]: one server, one vote.
///
/// No allocation: at most [`MAX_SOURCES`] outcomes.
#[must_use]
pub fn combine(
    outcomes: &[Outcome],
    authenticated: &[bool],
    min_auth: u8,
    min_plain: u8,
) -> Combination {
    if outcomes.is_empty() || outcomes.len() > MAX_SOURCES || authenticated.len() != outcomes.len()
    {
        return Combination::Failed(NoConsensus::BadSourceCount);
    }
    let n_auth = authenticated.iter().filter(|&&a| a).count();
    let group = |want: bool| {
        let mut g = [Outcome::Failed; MAX_SOURCES];
        for (i, (o, &a)) in outcomes.iter().zip(authenticated).enumerate() {
            if a == want {
                g[i] = *o;
            }
        }
        g
    };
    let n = outcomes.len();
    if n_auth > 0 {
        match decide(&group(true)[..n], min_auth) {
            Decision::Agreed(selection) => {
                return Combination::Agreed {
                    selection,
                    authenticated: true,
                    downgraded: false,
                }
            }
            Decision::Wait => return Combination::Wait,
            Decision::Failed(e) if n_auth == n => return Combination::Failed(e),
            Decision::Failed(_) => {}
        }
    }
    match decide(&group(false)[..n], min_plain) {
        Decision::Agreed(selection) => Combination::Agreed {
            selection,
            authenticated: false,
            downgraded: n_auth > 0,
        },
        Decision::Wait => Combination::Wait,
        Decision::Failed(e) => Combination::Failed(e),
    }
}

/// The largest group of replies sharing a point, and the number of replies.
fn largest_group(outcomes: &[Outcome]) -> Result<(Option<Selection>, u8), NoConsensus> {
    if outcomes.is_empty() || outcomes.len() > MAX_SOURCES {
        return Err(NoConsensus::BadSourceCount);
    }
    // The point covered by the most intervals is the low end of one of them (moving a point
    // down to the nearest low end never leaves an interval that covers it). For each low end,
    // count the intervals containing it (touching intervals overlap); the smallest of the
    // deepest wins. Quadratic in the replies (at most 32), but with no sort and no endpoint
    // array: small code and a small stack, which is what a microcontroller needs.
    let bounds = |o: &Outcome| match o {
        Outcome::Reply(iv) => Some((
            iv.lo.as_nanos().min(iv.hi.as_nanos()),
            iv.lo.as_nanos().max(iv.hi.as_nanos()),
        )),
        _ => None,
    };
    let mut replies = 0u8;
    let (mut best_depth, mut best_at) = (0u8, 0i64);
    for (v, _) in outcomes.iter().filter_map(bounds) {
        replies += 1;
        let depth = outcomes
            .iter()
            .filter_map(bounds)
            .filter(|&(a, b)| a <= v && v <= b)
            .count() as u8;
        if depth > best_depth || (depth == best_depth && v < best_at) {
            best_depth = depth;
            best_at = v;
        }
    }
    if replies == 0 {
        return Ok((None, 0));
    }
    // Members: the intervals containing the best point.
    let mut agreed = 0u32;
    let mut count = 0u8;
    let (mut lo, mut hi) = (i64::MIN, i64::MAX);
    for (i, o) in outcomes.iter().enumerate() {
        if let Outcome::Reply(iv) = o {
            let (a, b) = (
                iv.lo.as_nanos().min(iv.hi.as_nanos()),
                iv.lo.as_nanos().max(iv.hi.as_nanos()),
            );
            if a <= best_at && best_at <= b {
                agreed |= 1 << i;
                count += 1;
                lo = lo.max(a);
                hi = hi.min(b);
            }
        }
    }
    let interval = OffsetInterval {
        lo: SignedDuration::from_nanos(lo),
        hi: SignedDuration::from_nanos(hi),
    };
    let offset = interval.midpoint();
    Ok((
        Some(Selection {
            agreed,
            count,
            interval,
            offset,
        }),
        replies,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: i64) -> SignedDuration {
        SignedDuration::from_millis(n)
    }
    fn reply(offset_ms: i64, err_ms: i64) -> Outcome {
        Outcome::Reply(OffsetInterval::around(ms(offset_ms), ms(err_ms)))
    }

    #[test]
    fn two_honest_outvote_one_liar() {
        let o = [reply(1000, 5), reply(3_601_000, 5), reply(1002, 5)];
        let s = select(&o, 2).unwrap();
        assert_eq!(s.agreed, 0b101);
        assert_eq!(s.count, 2);
        assert!(!s.is_member(1));
        assert_eq!(
            s.interval,
            OffsetInterval {
                lo: ms(997),
                hi: ms(1005)
            }
        );
        // The centre of 997 .. 1005, not the mean 1001 of the two offsets.
        assert_eq!(s.offset, ms(1001));
        // Asymmetric errors: the mean of the offsets (5) would sit at the interval's edge.
        let s = select(&[reply(0, 10), reply(10, 1)], 2).unwrap();
        assert_eq!(
            s.interval,
            OffsetInterval {
                lo: ms(9),
                hi: ms(10)
            }
        );
        assert_eq!(s.offset, s.interval.midpoint());
        assert_eq!(s.offset, SignedDuration::from_micros(9500));
    }

    #[test]
    fn disjoint_pairs_do_not_make_a_majority() {
        let o = [reply(0, 1), reply(0, 1), reply(500, 1), reply(500, 1)];
        assert_eq!(
            select(&o, 2),
            Err(NoConsensus::Disagreement {
                largest_group: 2,
                replies: 4,
                needed: 2
            })
        );
    }

    #[test]
    fn too_few_replies() {
        let o = [reply(0, 1), Outcome::Failed, Outcome::Failed];
        assert_eq!(
            select(&o, 2),
            Err(NoConsensus::TooFewReplies {
                replies: 1,
                needed: 2
            })
        );
        assert_eq!(select(&[], 1), Err(NoConsensus::BadSourceCount));
        assert_eq!(
            select(&[Outcome::Pending; 33], 1),
            Err(NoConsensus::BadSourceCount)
        );
    }

    #[test]
    fn a_single_source_is_enough_when_asked_for_one() {
        assert_eq!(default_min_agree(1), 1);
        assert_eq!(default_min_agree(2), 1);
        assert_eq!(default_min_agree(3), 2);
        let s = select(&[reply(-7, 2)], 1).unwrap();
        assert_eq!(s.offset, ms(-7));
        assert_eq!(s.interval.radius(), ms(2));
    }

    #[test]
    fn touching_intervals_agree() {
        let o = [reply(0, 5), reply(10, 5), reply(1000, 5)];
        let s = select(&o, 2).unwrap();
        assert_eq!(s.agreed, 0b011);
        assert_eq!(
            s.interval,
            OffsetInterval {
                lo: ms(5),
                hi: ms(5)
            }
        );
    }

    #[test]
    fn decides_early_once_the_outcome_cannot_change() {
        let p = Outcome::Pending;
        // Two of three agree, the third is slow: the third cannot outvote them.
        assert!(
            matches!(decide(&[reply(0, 1), reply(0, 1), p], 2), Decision::Agreed(s) if s.count == 2)
        );
        // One of three answered: wait.
        assert_eq!(decide(&[reply(0, 1), p, p], 2), Decision::Wait);
        // Two agree, two pending of four: the pending pair could form an equal group. Wait.
        assert_eq!(decide(&[reply(0, 1), reply(0, 1), p, p], 2), Decision::Wait);
        // Liar and honest disagree, one pending: wait for the tie-breaker.
        assert_eq!(decide(&[reply(0, 1), reply(3600, 1), p], 2), Decision::Wait);
        // Two dead and one pending: two can never agree; none has answered (the pending one
        // is not counted as an answer).
        assert_eq!(
            decide(&[Outcome::Failed, Outcome::Failed, p], 2),
            Decision::Failed(NoConsensus::TooFewReplies {
                replies: 0,
                needed: 2
            })
        );
        // Everything in: the final verdict.
        assert!(matches!(
            decide(&[reply(0, 1), reply(3600, 1), Outcome::Failed], 2),
            Decision::Failed(NoConsensus::Disagreement { .. })
        ));
    }

    /// The sweep over sorted endpoints (starts before ends at equal values): the textbook
    /// Marzullo, as an oracle for the sort-free scan.
    fn sweep_best_point(outcomes: &[Outcome]) -> Option<(u8, i64)> {
        let mut points = [(0i64, 0u8); 2 * MAX_SOURCES];
        let mut n = 0;
        for o in outcomes {
            if let Outcome::Reply(iv) = o {
                let (a, b) = (iv.lo.min(iv.hi), iv.lo.max(iv.hi));
                points[n] = (a.as_nanos(), 0);
                points[n + 1] = (b.as_nanos(), 1);
                n += 2;
            }
        }
        let points = &mut points[..n];
        points.sort_unstable();
        let (mut depth, mut best) = (0u8, None);
        for &(v, kind) in points.iter() {
            if kind == 0 {
                depth += 1;
                match best {
                    Some((d, _)) if depth <= d => {}
                    _ => best = Some((depth, v)),
                }
            } else {
                depth -= 1;
            }
        }
        best
    }

    #[test]
    fn the_scan_finds_the_same_point_and_group_as_the_sorted_sweep() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let n = (next() % 12 + 1) as usize;
            let mut o = [Outcome::Pending; 12];
            for slot in o.iter_mut().take(n) {
                *slot = match next() % 6 {
                    0 => Outcome::Failed,
                    1 => Outcome::Pending,
                    // Small values so that ties and touching intervals are common.
                    _ => Outcome::Reply(OffsetInterval::around(
                        ms((next() % 40) as i64 - 20),
                        ms((next() % 8) as i64),
                    )),
                };
            }
            let o = &o[..n];
            let (sel, _) = largest_group(o).unwrap();
            match (sel, sweep_best_point(o)) {
                (None, None) => {}
                (Some(s), Some((depth, at))) => {
                    assert_eq!(s.count, depth, "{o:?}");
                    let mut members = 0u32;
                    for (i, x) in o.iter().enumerate() {
                        if let Outcome::Reply(iv) = x {
                            let (a, b) = (iv.lo.min(iv.hi), iv.lo.max(iv.hi));
                            if a.as_nanos() <= at && at <= b.as_nanos() {
                                members |= 1 << i;
                            }
                        }
                    }
                    assert_eq!(s.agreed, members, "{o:?}");
                    assert!(s.interval.lo.as_nanos() <= at && at <= s.interval.hi.as_nanos());
                    assert!(s.interval.lo <= s.offset && s.offset <= s.interval.hi);
                }
                other => panic!("{other:?} for {o:?}"),
            }
        }
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        let o = [
            Outcome::Reply(OffsetInterval {
                lo: SignedDuration::MAX,
                hi: SignedDuration::MAX,
            }),
            Outcome::Reply(OffsetInterval::around(
                SignedDuration::from_nanos(i64::MIN + 1),
                SignedDuration::MAX,
            )),
            Outcome::Reply(OffsetInterval {
                lo: ms(5),
                hi: ms(-5),
            }),
        ];
        let _ = select(&o, 2);
        let _ = decide(&o, 2);
    }

    #[test]
    fn authenticated_sources_decide_first_and_plain_ntp_only_as_a_marked_downgrade() {
        let r = |lo: i64, hi: i64| {
            Outcome::Reply(OffsetInterval {
                lo: SignedDuration::from_secs(lo),
                hi: SignedDuration::from_secs(hi),
            })
        };
        // Two NTS sources agree at 0; three plain NTP sources are shifted by +100 s.
        let o = [r(-1, 1), r(0, 2), r(99, 101), r(100, 102), r(99, 100)];
        let a = [true, true, false, false, false];
        match combine(&o, &a, 2, 2) {
            Combination::Agreed {
                selection,
                authenticated,
                downgraded,
            } => {
                assert!(authenticated && !downgraded);
                assert_eq!(selection.agreed, 0b11);
            }
            other => panic!("{other:?}"),
        }
        // NTS blocked: plain NTP decides, marked as a downgrade.
        let blocked = [Outcome::Failed, Outcome::Failed, o[2], o[3], o[4]];
        assert!(matches!(
            combine(&blocked, &a, 2, 2),
            Combination::Agreed {
                authenticated: false,
                downgraded: true,
                ..
            }
        ));
        // An authenticated source still pending: wait for it rather than take plain NTP.
        let pending = [Outcome::Pending, o[1], o[2], o[3], o[4]];
        assert_eq!(combine(&pending, &a, 2, 2), Combination::Wait);
        // Only plain sources configured: not a downgrade.
        assert!(matches!(
            combine(&o[2..], &a[2..], 2, 2),
            Combination::Agreed {
                authenticated: false,
                downgraded: false,
                ..
            }
        ));
        assert_eq!(
            combine(&o, &a[..2], 2, 2),
            Combination::Failed(NoConsensus::BadSourceCount)
        );
    }
}
