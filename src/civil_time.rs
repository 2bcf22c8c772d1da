//! Calendar dates of Unix times and back, without a date crate: for messages, for the `created`
//! time of exported images, and for the dates of signed Release files, all in UTC.

/// Year, month, day, hour, minute and second of `unix` seconds since 1970 (UTC).
pub fn civil(unix: u64) -> (u64, u64, u64, u64, u64, u64) {
    let days = unix / 86_400;
    let seconds = unix % 86_400;
    // Howard Hinnant's civil_from_days, for days since 1970-01-01 (never negative here).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (
        year,
        month,
        day,
        seconds / 3600,
        seconds % 3600 / 60,
        seconds % 60,
    )
}

/// `2025-05-20T13:04:05Z`.
pub fn rfc3339(unix: u64) -> String {
    let (year, month, day, hour, minute, second) = civil(unix);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
}

/// Seconds since 1970 for a Release `Date:` such as `Sat, 11 Jul 2026 10:16:37 UTC`.
pub fn rfc2822_epoch(date: &str) -> Option<u64> {
    let mut words = date.split_whitespace();
    let first = words.next()?;
    let day: u64 = if first.ends_with(',') {
        words.next()?.parse().ok()?
    } else {
        first.parse().ok()?
    };
    let month_name = words.next()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == month_name)? as u64
        + 1;
    let year: i64 = words.next()?.parse().ok()?;
    let mut clock = words.next()?.split(':').map(|p| p.parse::<u64>().ok());
    let (hour, minute, second) = (
        clock.next()??,
        clock.next()??,
        clock.next().flatten().unwrap_or(0),
    );
    // Days from 1970-01-01 to the civil date (Howard Hinnant's algorithm).
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * m as i64 + 2) / 5 + day as i64 - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    u64::try_from(days)
        .ok()
        .map(|d| d * 86_400 + hour * 3600 + minute * 60 + second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_dates_become_epochs() {
        assert_eq!(rfc2822_epoch("Thu, 01 Jan 1970 00:00:00 UTC"), Some(0));
        assert_eq!(
            rfc2822_epoch("Sat, 11 Jul 2026 10:16:37 UTC"),
            Some(1_783_764_997)
        );
        assert_eq!(
            rfc2822_epoch("Tue, 29 Feb 2000 12:00:00 UTC"),
            Some(951_825_600)
        );
        assert_eq!(rfc2822_epoch("garbage"), None);
    }

    #[test]
    fn dates_of_known_times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_783_765_000), "2026-07-11T10:16:40Z");
    }
}
