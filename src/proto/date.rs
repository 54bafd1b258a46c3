//! Calendar dates for the wire and the logs: HTTP dates (IMF-fixdate, RFC 9110 §5.6.7), the
//! C `ctime` shape of uWSGI's request log and the Apache shape of its `%(ltime)`, all in UTC,
//! from seconds since the epoch.
//!
//! Pure arithmetic (Howard Hinnant's civil-date algorithms): no clock, no time zone database.

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A moment split for printing.
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    weekday: &'static str,
    hour: u64,
    minute: u64,
    second: u64,
}

impl Civil {
    fn from_secs(secs: u64) -> Civil {
        let days = secs / 86_400;
        let rem = secs % 86_400;
        let (year, month, day) = civil_from_days(days as i64);
        Civil {
            year,
            month,
            day,
            weekday: DAYS[(days % 7) as usize],
            hour: rem / 3600,
            minute: rem % 3600 / 60,
            second: rem % 60,
        }
    }

    fn month_name(&self) -> &'static str {
        MONTHS[(self.month - 1) as usize]
    }
}

/// Seconds since the epoch as an IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
pub(crate) fn format_http_date(secs: u64) -> String {
    let mut text = String::with_capacity(29);
    write_http_date(&mut text, secs);
    text
}

/// [`format_http_date`] at the end of `out` (a reused buffer: no allocation).
pub(crate) fn write_http_date(out: &mut String, secs: u64) {
    use std::fmt::Write as _;
    let c = Civil::from_secs(secs);
    let _ = write!(
        out,
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        c.weekday,
        c.day,
        c.month_name(),
        c.year,
        c.hour,
        c.minute,
        c.second
    );
}

/// Seconds since the epoch as C's `ctime` prints them (UTC): `Mon Nov 23 17:45:01 2026`.
#[cfg(test)]
fn format_ctime(secs: u64) -> String {
    Ctime(secs).to_string()
}

/// [`format_ctime`] as it is written out (no string made).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctime(pub(crate) u64);

impl std::fmt::Display for Ctime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = Civil::from_secs(self.0);
        write!(
            f,
            "{} {} {:2} {:02}:{:02}:{:02} {}",
            c.weekday,
            c.month_name(),
            c.day,
            c.hour,
            c.minute,
            c.second,
            c.year
        )
    }
}

/// Seconds since the epoch in the Apache common-log shape of uWSGI's `%(ltime)`
/// (`strftime("%d/%b/%Y:%H:%M:%S %z")`), in UTC: `23/Nov/2026:17:45:01 +0000`.
pub(crate) fn format_common_log(secs: u64) -> String {
    let c = Civil::from_secs(secs);
    format!(
        "{:02}/{}/{}:{:02}:{:02}:{:02} +0000",
        c.day,
        c.month_name(),
        c.year,
        c.hour,
        c.minute,
        c.second
    )
}

/// Parses an IMF-fixdate into seconds since the epoch (other date formats: `None`).
pub(crate) fn parse_http_date(text: &str) -> Option<u64> {
    let mut parts = text.trim().split_ascii_whitespace();
    let _weekday = parts.next()?;
    let day: u32 = parts.next()?.parse().ok()?;
    let month_name = parts.next()?;
    let month = MONTHS.iter().position(|m| *m == month_name)? as u32 + 1;
    let year: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if parts.next()? != "GMT" || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    u64::try_from(days)
        .ok()
        .map(|d| d * 86_400 + h * 3600 + m * 60 + s)
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to (year, month, day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Howard Hinnant's `days_from_civil`: the inverse of [`civil_from_days`].
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_round_trip() {
        assert_eq!(
            format_http_date(784_111_777),
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        for secs in [0, 951_782_400, 1_795_455_901, 4_102_444_799] {
            assert_eq!(parse_http_date(&format_http_date(secs)), Some(secs));
        }
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), None);
        assert_eq!(parse_http_date("garbage"), None);
    }

    #[test]
    fn ctime_formats_like_c() {
        assert_eq!(format_ctime(0), "Thu Jan  1 00:00:00 1970");
        assert_eq!(format_ctime(1_795_455_901), "Mon Nov 23 17:45:01 2026");
        assert_eq!(format_ctime(951_782_400), "Tue Feb 29 00:00:00 2000");
    }

    #[test]
    fn common_log_times_look_like_apache() {
        assert_eq!(format_common_log(0), "01/Jan/1970:00:00:00 +0000");
        assert_eq!(
            format_common_log(1_795_455_901),
            "23/Nov/2026:17:45:01 +0000"
        );
    }
}
