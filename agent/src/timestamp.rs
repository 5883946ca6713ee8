//! RFC 3339 timestamps (`2026-12-31T00:00:00Z`, `2026-12-31T01:00:00+01:00`) read into
//! unix seconds, and the build-date floor that tells an obviously wrong clock.

/// The earliest time this build can run at (2026-11-01T00:00:00Z). A clock before it is
/// obviously wrong (an unset RTC starts in 1970 or 2000), so a document's `expires`
/// cannot be checked. A fixed constant keeps builds reproducible; it moves forward
/// with releases.
pub const BUILD_FLOOR: i64 = 1_793_491_200;

/// Unix seconds of an RFC 3339 date-time (`T` or space between date and time, optional
/// fraction, `Z` or `±hh:mm`), or `None` when the text is not one.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let sep = |at: usize, c: u8| b.get(at) == Some(&c);
    if !(sep(4, b'-') && sep(7, b'-') && sep(13, b':') && sep(16, b':')) {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    // 60 is a leap second, which RFC 3339 allows; it counts as the next second.
    if hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let o = rest.get(1..)?;
            if o.len() != 5 || o.as_bytes()[2] != b':' {
                return None;
            }
            let (oh, om) = (num_of(&o[..2])?, num_of(&o[3..])?);
            if oh > 23 || om > 59 {
                return None;
            }
            sign * (oh * 3600 + om * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + min * 60 + sec - offset)
}

fn num_of(s: &str) -> Option<i64> {
    s.bytes()
        .all(|c| c.is_ascii_digit())
        .then(|| s.parse().ok())?
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's days-from-civil).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `secs` as `2026-12-31T00:00:00Z`.
pub fn format(secs: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    let s = crate::report::timestamp(t);
    // report::timestamp writes milliseconds; whole seconds read better in messages.
    format!("{}Z", &s[..19])
}

/// The system clock in unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_offsets_and_fractions() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2026-11-01T00:00:00Z"), Some(BUILD_FLOOR));
        assert_eq!(
            parse_rfc3339("2026-11-01T01:00:00+01:00"),
            Some(BUILD_FLOOR)
        );
        assert_eq!(
            parse_rfc3339("2026-10-31T23:30:00.25-00:30"),
            Some(BUILD_FLOOR)
        );
        assert_eq!(parse_rfc3339("2000-02-29 12:00:00z"), Some(951_825_600));
        assert_eq!(format(951_825_600), "2000-02-29T12:00:00Z");
    }

    #[test]
    fn malformed_timestamps_are_refused() {
        for bad in [
            "",
            "2026-12-31",
            "2026-12-31T00:00:00",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-12-31T24:00:00Z",
            "2026-12-31T00:00:00.Z",
            "2026-12-31T00:00:00+1:00",
            "2026-12-31T00:00:00+01:60",
            "+026-12-31T00:00:00Z",
            "tomorrow at noon please",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
