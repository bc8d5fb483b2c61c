//! HTTP dates (RFC 9110 §5.6.7) to and from Unix seconds, without a dependency.
//!
//! [`parse`] reads the three forms a recipient must accept: IMF-fixdate
//! (`Sun, 06 Nov 1994 08:49:37 GMT`), the obsolete RFC 850 form (`Sunday, 06-Nov-94 08:49:37
//! GMT`) and C's asctime (`Sun Nov  6 08:49:37 1994`). Names are matched without regard to case
//! (a lenient reading; the weekday is checked to be a weekday name, not to agree with the date).
//! A two-digit RFC 850 year below 70 is 20xx, otherwise 19xx (the RFC's "more than 50 years in
//! the future" rule gives the same answer for every year this code will meet, and needs no clock).
//! Dates before 1970 read as 0. [`format`] writes IMF-fixdate. The cache calls these for `Date`,
//! `Expires`, `Last-Modified` and `If-Modified-Since`; nothing here allocates.

const DAYS: [&[u8]; 7] = [b"Sun", b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat"];
const LONG_DAYS: [&[u8]; 7] = [
    b"Sunday",
    b"Monday",
    b"Tuesday",
    b"Wednesday",
    b"Thursday",
    b"Friday",
    b"Saturday",
];
const MONTHS: [&[u8]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// Unix seconds of an HTTP date, or `None` when `v` is none of the three forms.
pub fn parse(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    let comma = v.iter().position(|&b| b == b',');
    match comma {
        Some(3) => imf_fixdate(v),
        Some(_) => rfc850(v),
        None => asctime(v),
    }
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`
fn imf_fixdate(v: &[u8]) -> Option<u64> {
    let mut c = Cursor(v);
    c.name_in(&DAYS)?;
    c.lit(b", ")?;
    let day = c.digits(2)?;
    c.lit(b" ")?;
    let month = c.name_in(&MONTHS)? + 1;
    c.lit(b" ")?;
    let year = c.digits(4)?;
    c.lit(b" ")?;
    let secs = c.time()?;
    c.lit(b" GMT")?;
    c.end()?;
    to_unix(year, month, day, secs)
}

/// `Sunday, 06-Nov-94 08:49:37 GMT`
fn rfc850(v: &[u8]) -> Option<u64> {
    let mut c = Cursor(v);
    c.name_in(&LONG_DAYS)?;
    c.lit(b", ")?;
    let day = c.digits(2)?;
    c.lit(b"-")?;
    let month = c.name_in(&MONTHS)? + 1;
    c.lit(b"-")?;
    let yy = c.digits(2)?;
    let year = if yy < 70 { 2000 + yy } else { 1900 + yy };
    c.lit(b" ")?;
    let secs = c.time()?;
    c.lit(b" GMT")?;
    c.end()?;
    to_unix(year, month, day, secs)
}

/// `Sun Nov  6 08:49:37 1994`
fn asctime(v: &[u8]) -> Option<u64> {
    let mut c = Cursor(v);
    c.name_in(&DAYS)?;
    c.lit(b" ")?;
    let month = c.name_in(&MONTHS)? + 1;
    c.lit(b" ")?;
    let day = if c.0.first() == Some(&b' ') {
        c.lit(b" ")?;
        c.digits(1)?
    } else {
        c.digits(2)?
    };
    c.lit(b" ")?;
    let secs = c.time()?;
    c.lit(b" ")?;
    let year = c.digits(4)?;
    c.end()?;
    to_unix(year, month, day, secs)
}

/// What is left to read.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn lit(&mut self, s: &[u8]) -> Option<()> {
        let rest = self.0.strip_prefix(s)?;
        self.0 = rest;
        Some(())
    }

    fn end(&self) -> Option<()> {
        self.0.is_empty().then_some(())
    }

    /// Exactly `n` ASCII digits.
    fn digits(&mut self, n: usize) -> Option<u64> {
        let d = self.0.get(..n)?;
        if !d.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.0 = &self.0[n..];
        Some(d.iter().fold(0, |a, &b| a * 10 + u64::from(b - b'0')))
    }

    /// One of `names` (case-insensitive, longest names are tried as given); its index.
    fn name_in(&mut self, names: &[&[u8]]) -> Option<u32> {
        let (i, n) = names.iter().enumerate().find(|(_, n)| {
            self.0
                .get(..n.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(n))
        })?;
        self.0 = &self.0[n.len()..];
        Some(i as u32)
    }

    /// `hh:mm:ss` as seconds into the day (a leap second `60` is accepted).
    fn time(&mut self) -> Option<u64> {
        let h = self.digits(2)?;
        self.lit(b":")?;
        let m = self.digits(2)?;
        self.lit(b":")?;
        let s = self.digits(2)?;
        (h < 24 && m < 60 && s <= 60).then_some(h * 3600 + m * 60 + s)
    }
}

// `is_multiple_of` needs Rust 1.87; the workspace's rust-version is 1.85.
#[allow(clippy::manual_is_multiple_of)]
fn is_leap(y: u64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: u64, m: u32) -> u64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn to_unix(year: u64, month: u32, day: u64, secs: u64) -> Option<u64> {
    if day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let days = days_from_civil(year as i64, month, day as u32);
    Some(u64::try_from(days * 86_400 + secs as i64).unwrap_or(0))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// IMF-fixdate of `secs` (Unix seconds), e.g. `Sun, 06 Nov 1994 08:49:37 GMT` (always 29 bytes;
/// years past 9999 are written as 9999).
pub fn format(secs: u64) -> [u8; 29] {
    let days = (secs / 86_400) as i64;
    let tod = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let y = y.min(9999) as u64;
    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    out[..3].copy_from_slice(DAYS[((days + 4) % 7) as usize]);
    two(&mut out[5..7], u64::from(d));
    out[8..11].copy_from_slice(MONTHS[m as usize - 1]);
    two(&mut out[12..14], y / 100);
    two(&mut out[14..16], y % 100);
    two(&mut out[17..19], tod / 3600);
    two(&mut out[20..22], tod / 60 % 60);
    two(&mut out[23..25], tod % 60);
    out
}

fn two(out: &mut [u8], n: u64) {
    out[0] = b'0' + (n / 10 % 10) as u8;
    out[1] = b'0' + (n % 10) as u8;
}
