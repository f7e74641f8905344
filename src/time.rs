//! RFC 3339 UTC timestamps (`2026-11-25T11:43:03Z`) from `SystemTime`, without a date crate.
//! prefixd rejects timestamps without a zone, so the `Z` is not optional.

use std::time::{SystemTime, UNIX_EPOCH};

pub fn rfc3339(t: SystemTime) -> String {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs(),
        Err(_) => 0, // a clock before 1970 is broken; the epoch is still a valid timestamp
    };
    rfc3339_from_unix(secs)
}

pub fn now() -> String {
    rfc3339(SystemTime::now())
}

/// Milliseconds since the epoch (0 for a clock before 1970), as notices and leases record
/// times.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub fn now_ms() -> u64 {
    unix_ms(SystemTime::now())
}

/// Seconds since the epoch, with their fraction.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

pub fn rfc3339_from_unix(secs: u64) -> String {
    // Below 2^48 for any u64 (a certificate's date may be anything): the cast cannot wrap, and
    // a year past 9999 is written with more digits, which no parser here accepts.
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `Nov  5 12:00:00` (UTC): the RFC 3164 (BSD syslog) timestamp.
pub fn bsd_syslog(t: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (_, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{} {d:>2} {:02}:{:02}:{:02}",
        MONTHS[(m - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Milliseconds since the epoch of an RFC 3339 timestamp as prefixd writes them
/// (`2026-11-28T01:16:19.880990+00:00`, `…Z`, any number of fraction digits, any offset).
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        (!t.is_empty() && t.bytes().all(|c| c.is_ascii_digit()))
            .then(|| t.parse().ok())
            .flatten()
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut ms = 0;
    if b[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let frac = s.get(start..i).filter(|f| !f.is_empty())?;
        ms = format!("{frac:0<3}")[..3].parse::<i64>().ok()?;
    }
    // Bytes, not string slices: a multi-byte character where the zone should be is refused,
    // not a panic (this text comes from prefixd's replies).
    let offset_min = match &b[i..] {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            if *sign == b'-' {
                -(oh * 60 + om)
            } else {
                oh * 60 + om
            }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    days.checked_mul(86_400)?
        .checked_add(h * 3600 + mi * 60 + sec)?
        .checked_sub(offset_min * 60)?
        .checked_mul(1000)?
        .checked_add(ms)
}

/// (year, month, day) to days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prefixd_timestamps() {
        let cases: &[(&str, Option<i64>)] = &[
            ("1970-01-01T00:00:00Z", Some(0)),
            ("2000-02-29T00:00:00Z", Some(951_782_400_000)),
            ("2026-11-28T01:16:19.880990+00:00", Some(1_795_828_579_880)),
            ("2026-11-28T01:16:19.8+00:00", Some(1_795_828_579_800)),
            ("2026-11-28T01:16:19.123456789Z", Some(1_795_828_579_123)),
            ("2026-11-28T02:16:19+01:00", Some(1_795_828_579_000)),
            ("2026-11-27T20:16:19-05:00", Some(1_795_828_579_000)),
            ("2026-11-28 01:16:19z", Some(1_795_828_579_000)),
            ("2026-11-28T01:16:19", None),
            ("2026-11-28T01:16:19.Z", None),
            ("2026-13-28T01:16:19Z", None),
            ("2026-11-28T01:16:19+0000", None),
            ("not a time at all!!", None),
            ("", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_rfc3339_ms(s), *want, "{s}");
        }
        for secs in [0u64, 951_782_400, 1_795_828_579, 4_102_444_800] {
            let text = rfc3339_from_unix(secs);
            assert_eq!(parse_rfc3339_ms(&text), Some(secs as i64 * 1000), "{text}");
        }
    }

    #[test]
    fn odd_zones_are_refused_not_a_panic() {
        // Six bytes where the zone goes, the first of a multi-byte character: this sliced a
        // str inside a character and panicked, aborting the release binary on a bad
        // `updated_at` from prefixd.
        for s in [
            "0000-01-01T00:00:00日0Z0",
            "2026-11-28T01:16:19é00:00",
            "2026-11-28T01:16:19+0é:00",
            "2026-11-28T01:16:19+24:00",
            "2026-11-28T01:16:19+00:60",
            "2026-11-28T01:16:19.5日",
        ] {
            assert_eq!(parse_rfc3339_ms(s), None, "{s}");
        }
        assert_eq!(
            parse_rfc3339_ms("2026-11-28T01:16:19-23:59"),
            Some(1_795_828_579_000 + (23 * 60 + 59) * 60_000)
        );
    }

    #[test]
    fn formats_known_instants() {
        let cases: &[(u64, &str)] = &[
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"), // leap day of a /400 year
            (951_868_799, "2000-02-29T23:59:59Z"),
            (951_868_800, "2000-03-01T00:00:00Z"),
            (4_107_542_400, "2100-03-01T00:00:00Z"), // 2100 is not a leap year
            (4_107_542_399, "2100-02-28T23:59:59Z"),
            (1_709_164_800, "2024-02-29T00:00:00Z"),
            (1_706_745_599, "2024-01-31T23:59:59Z"), // end of month
            (1_706_745_600, "2024-02-01T00:00:00Z"),
            (1_735_689_599, "2024-12-31T23:59:59Z"), // end of year
            (1_735_689_600, "2025-01-01T00:00:00Z"),
            (1_740_787_199, "2025-02-28T23:59:59Z"), // non-leap February
            (1_740_787_200, "2025-03-01T00:00:00Z"),
            (1_798_761_599, "2026-12-31T23:59:59Z"),
            (1_793_184_183, "2026-10-28T10:43:03Z"),
        ];
        for (secs, want) in cases {
            assert_eq!(rfc3339_from_unix(*secs), *want, "secs={secs}");
        }
    }

    #[test]
    fn bsd_syslog_pads_the_day_with_a_space() {
        let t = |s| UNIX_EPOCH + std::time::Duration::from_secs(s);
        assert_eq!(bsd_syslog(t(1_793_184_183)), "Oct 28 10:43:03");
        assert_eq!(bsd_syslog(t(1_709_164_800)), "Feb 29 00:00:00");
        assert_eq!(bsd_syslog(t(0)), "Jan  1 00:00:00");
    }

    #[test]
    fn every_day_of_four_centuries_round_trips() {
        // Walk day by day from 1970 to 2400 and check that the calendar advances by exactly one.
        let mut prev = civil_from_days(0);
        for day in 1..157_000 {
            let cur = civil_from_days(day);
            let month_len = match prev.1 {
                2 if (prev.0 % 4 == 0 && prev.0 % 100 != 0) || prev.0 % 400 == 0 => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            let want = if prev.2 < month_len {
                (prev.0, prev.1, prev.2 + 1)
            } else if prev.1 < 12 {
                (prev.0, prev.1 + 1, 1)
            } else {
                (prev.0 + 1, 1, 1)
            };
            assert_eq!(cur, want, "day {day}");
            prev = cur;
        }
    }
}

/// Properties: every instant we format parses back, timestamps built from any valid fields
/// parse to the instant a plain day-by-day calendar gives, and garbage, cut or too-far
/// timestamps are refused without a panic.
#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    use crate::proptest_cases as cases;

    /// 9999-12-31T23:59:59Z, the last instant four year digits can write.
    const LAST_4_DIGIT: u64 = 253_402_300_799;

    fn leap(y: i64) -> bool {
        (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
    }

    fn month_len(y: i64, m: u32) -> u32 {
        match m {
            2 if leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        }
    }

    /// Days from 1970-01-01, counted year by year and month by month (no formula shared with
    /// the code under test).
    fn naive_days(y: i64, m: u32, d: u32) -> i64 {
        let mut days: i64 = 0;
        if y >= 1970 {
            days += (1970..y)
                .map(|y| if leap(y) { 366 } else { 365 })
                .sum::<i64>();
        } else {
            days -= (y..1970)
                .map(|y| if leap(y) { 366 } else { 365 })
                .sum::<i64>();
        }
        days += (1..m).map(|m| i64::from(month_len(y, m))).sum::<i64>();
        days + i64::from(d) - 1
    }

    /// A timestamp's fields, valid by construction; the offset in minutes east, None for `Z`.
    #[derive(Debug, Clone)]
    struct Fields {
        y: i64,
        mo: u32,
        d: u32,
        h: u32,
        mi: u32,
        s: u32,
        frac: String,
        offset: Option<i64>,
        sep: char,
    }

    fn fields() -> impl Strategy<Value = Fields> {
        (
            0i64..=9999,
            1u32..=12,
            1u32..=31,
            (0u32..24, 0u32..60, 0u32..=60),
            "[0-9]{0,12}",
            prop::option::of(-(23 * 60 + 59)..=(23i64 * 60 + 59)),
            prop::sample::select(vec!['T', 't', ' ']),
        )
            .prop_map(|(y, mo, d, (h, mi, s), frac, offset, sep)| Fields {
                y,
                mo,
                d: d.min(month_len(y, mo)),
                h,
                mi,
                s,
                frac,
                offset,
                sep,
            })
    }

    impl Fields {
        fn text(&self) -> String {
            let frac = if self.frac.is_empty() {
                String::new()
            } else {
                format!(".{}", self.frac)
            };
            let zone = match self.offset {
                None => "Z".to_string(),
                Some(o) => format!(
                    "{}{:02}:{:02}",
                    if o < 0 { '-' } else { '+' },
                    o.abs() / 60,
                    o.abs() % 60
                ),
            };
            format!(
                "{:04}-{:02}-{:02}{}{:02}:{:02}:{:02}{frac}{zone}",
                self.y, self.mo, self.d, self.sep, self.h, self.mi, self.s
            )
        }

        fn millis(&self) -> i64 {
            let secs = naive_days(self.y, self.mo, self.d) * 86_400
                + i64::from(self.h * 3600 + self.mi * 60 + self.s)
                - self.offset.unwrap_or(0) * 60;
            let ms: i64 = format!("{:0<3}", self.frac)[..3].parse().unwrap();
            secs * 1000 + ms
        }
    }

    proptest! {
        #![proptest_config(cases(256))]

        #[test]
        fn formatted_instants_parse_back(secs in prop_oneof![0..=LAST_4_DIGIT, 1_700_000_000u64..1_900_000_000]) {
            let text = rfc3339_from_unix(secs);
            prop_assert_eq!(text.len(), 20);
            prop_assert_eq!(parse_rfc3339_ms(&text), Some(secs as i64 * 1000), "{}", text);
        }

        #[test]
        fn years_past_9999_are_refused_not_wrapped(secs in (LAST_4_DIGIT + 1)..=u64::MAX) {
            let text = rfc3339_from_unix(secs);
            let year_digits = text.split('-').next().unwrap();
            prop_assert!(year_digits.len() >= 5 && year_digits.bytes().all(|b| b.is_ascii_digit()), "{}", text);
            prop_assert!(text.ends_with('Z'));
            prop_assert_eq!(parse_rfc3339_ms(&text), None, "{}", text);
            if let Some(t) = UNIX_EPOCH.checked_add(std::time::Duration::from_secs(secs)) {
                prop_assert_eq!(bsd_syslog(t).len(), 15);
                prop_assert_eq!(rfc3339(t), text);
            }
        }

        #[test]
        fn valid_fields_parse_to_the_day_by_day_calendar(f in fields()) {
            let text = f.text();
            prop_assert_eq!(parse_rfc3339_ms(&text), Some(f.millis()), "{}", text);
            // Every shorter prefix has lost its zone (or more): refused.
            for cut in 0..text.len() {
                prop_assert_eq!(parse_rfc3339_ms(&text[..cut]), None, "{}", &text[..cut]);
            }
            // So is anything after the zone.
            prop_assert_eq!(parse_rfc3339_ms(&format!("{text}0")), None);
        }

        #[test]
        fn garbage_is_refused_without_a_panic_and_only_ascii_parses(
            text in prop_oneof![
                any::<String>(),
                // A valid start with any tail: the zone is where odd bytes bite.
                (fields(), "[0-9Zz+\\-:.é日 ]{0,8}").prop_map(|(f, tail)| {
                    let t = f.text();
                    format!("{}{tail}", &t[..19])
                }),
                // One character of a valid timestamp replaced by anything.
                (fields(), any::<prop::sample::Index>(), any::<char>()).prop_map(|(f, i, c)| {
                    let mut chars: Vec<char> = f.text().chars().collect();
                    let i = i.index(chars.len());
                    chars[i] = c;
                    chars.into_iter().collect()
                }),
            ],
        ) {
            if let Some(ms) = parse_rfc3339_ms(&text) {
                prop_assert!(text.is_ascii(), "{:?}", text);
                // Within the years four digits can write, give or take a day of offset.
                prop_assert!((-62_167_305_600_000..=253_402_387_199_999).contains(&ms), "{:?} {}", text, ms);
            }
        }
    }
}
