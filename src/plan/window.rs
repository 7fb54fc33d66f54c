//! `[window]`: when a rollout may start or advance. Days of the week, hours of the day and
//! freeze periods, all in one IANA time zone's wall-clock time, so a window stays "09:00 to
//! 16:00 local" across daylight saving changes. Reading it from the plan, and the pure
//! functions the engine and `run` ask: is it open at this instant, and when does it next open.

use std::fmt;

use jiff::Timestamp;
use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;

use super::diagnostic::Diagnostic;
use super::parse::inner_span;
use super::reader::{At, Field, Table, quote_list, suggest};

/// How far ahead `next_open` looks. Freezes longer than this are refused at validation, so a
/// window that allows at least one day always opens within it.
const LOOKAHEAD_DAYS: i64 = 400;
/// A freeze longer than this would leave no window at all within `LOOKAHEAD_DAYS`.
const MAX_FREEZE_DAYS: i64 = 366;

const DAYS: [(&str, Weekday); 7] = [
    ("mon", Weekday::Monday),
    ("tue", Weekday::Tuesday),
    ("wed", Weekday::Wednesday),
    ("thu", Weekday::Thursday),
    ("fri", Weekday::Friday),
    ("sat", Weekday::Saturday),
    ("sun", Weekday::Sunday),
];

/// A change window. Every part is optional: no `days` means every day, no `hours` the whole
/// day, no `freeze` no exceptions.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// The days (in `timezone`) on which it is open, Monday first.
    pub days: Vec<Weekday>,
    /// From `start` (included) to `end` (excluded), wall-clock time; `None`: all day.
    pub hours: Option<Hours>,
    pub timezone: TimeZone,
    /// The zone's IANA name, as written.
    pub timezone_name: String,
    /// Closed periods, first and last day included.
    pub freeze: Vec<(Date, Date)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hours {
    pub start: Time,
    /// `None`: until midnight (written "24:00").
    pub end: Option<Time>,
}

impl Window {
    /// Whether a rollout may start or advance at `at`.
    pub fn is_open(&self, at: Timestamp) -> bool {
        let local = self.timezone.to_datetime(at);
        self.day_allowed(local.date()) && self.within_hours(local.time())
    }

    /// The first instant at or after `from` at which the window is open; `None` when it does
    /// not open within a year and a bit (only a plan that allows no day at all).
    pub fn next_open(&self, from: Timestamp) -> Option<Timestamp> {
        if self.is_open(from) {
            return Some(from);
        }
        let first = self.timezone.to_datetime(from).date();
        (0..=LOOKAHEAD_DAYS)
            .filter_map(|i| first.checked_add(jiff::Span::new().days(i)).ok())
            .filter(|day| self.day_allowed(*day))
            .find_map(|day| self.opening_on(day, from))
    }

    /// When the window opens on `day` at or after `from`, if it does.
    fn opening_on(&self, day: Date, from: Timestamp) -> Option<Timestamp> {
        let start = self.hours.map_or(Time::midnight(), |h| h.start);
        // The earlier reading of a local time that happens twice (clocks going back), and
        // for one that never happens (clocks going forward) the instant before the gap.
        let candidate = self
            .timezone
            .to_ambiguous_timestamp(day.to_datetime(start))
            .earlier()
            .ok()?
            .max(from);
        if self.is_open(candidate) {
            return Some(candidate);
        }
        // The start fell in a gap: the window opens when the clocks jump past it.
        let jump = self.timezone.following(candidate).next()?.timestamp();
        (self.timezone.to_datetime(jump).date() == day && self.is_open(jump)).then_some(jump)
    }

    fn day_allowed(&self, day: Date) -> bool {
        self.days.contains(&day.weekday())
            && !self
                .freeze
                .iter()
                .any(|(first, last)| *first <= day && day <= *last)
    }

    fn within_hours(&self, time: Time) -> bool {
        match self.hours {
            None => true,
            Some(Hours { start, end }) => time >= start && end.is_none_or(|end| time < end),
        }
    }

    /// The days it is open, as written in plans (`mon`, ...), Monday first.
    pub fn day_names(&self) -> Vec<&'static str> {
        DAYS.iter()
            .filter(|(_, d)| self.days.contains(d))
            .map(|(name, _)| *name)
            .collect()
    }

    /// The hours, as written in plans (`09:00-16:00`); `None`: all day.
    pub fn hours_text(&self) -> Option<String> {
        self.hours
            .map(|h| format!("{}-{}", hhmm(h.start), h.end.map_or("24:00".into(), hhmm)))
    }

    /// An instant in the window's zone, as people there read it: `Mon 2026-03-30 09:00 CEST`.
    pub fn show(&self, at: Timestamp) -> String {
        let zoned = at.to_zoned_datetime(self.timezone.clone());
        zoned.strftime("%a %Y-%m-%d %H:%M %Z").to_string()
    }
}

impl fmt::Display for Window {
    /// One line: `mon-thu 09:00-16:00 Europe/Berlin, frozen 2026-12-20/2027-01-04`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.day_names();
        let days = if days.len() == 7 {
            "every day".to_string()
        } else {
            days.join(",")
        };
        let hours = self.hours_text().unwrap_or_else(|| "all day".to_string());
        write!(f, "{days}, {hours} {}", self.timezone_name)?;
        for (first, last) in &self.freeze {
            if first == last {
                write!(f, "; frozen {first}")?;
            } else {
                write!(f, "; frozen {first}/{last}")?;
            }
        }
        Ok(())
    }
}

fn hhmm(t: Time) -> String {
    format!("{:02}:{:02}", t.hour(), t.minute())
}

/// Reads `[window]`; `None` when the plan has none or it is invalid (the problems are recorded).
pub fn read(root: &Table<'_, '_>) -> Option<Window> {
    let table = root.field("window")?.get().table()?;
    let days = match table.field("days") {
        Some(f) => days(&f.get()),
        None => Some(DAYS.iter().map(|(_, d)| *d).collect()),
    };
    let hours = match table.field("hours") {
        Some(f) => hours(&f.get()).map(Some),
        None => Some(None),
    };
    let zone = match table.field("timezone") {
        Some(f) => timezone(&f.get()),
        None => Some(("UTC".to_string(), TimeZone::UTC)),
    };
    let freeze = match table.field("freeze") {
        Some(f) => freeze(&f.get()),
        None => Some(Vec::new()),
    };
    table.finish(|_| None);
    let (timezone_name, timezone) = zone?;
    Some(Window {
        days: days?,
        hours: hours?,
        timezone,
        timezone_name,
        freeze: freeze?,
    })
}

fn days(f: &Field<'_, '_>) -> Option<Vec<Weekday>> {
    let items = f.strings("days = [\"mon\", \"tue\", \"wed\", \"thu\"]")?;
    if items.is_empty() {
        f.cx.push(
            f.error("the window has no days")
                .label("empty")
                .help("name the days it is open, e.g. days = [\"mon\", \"tue\", \"wed\", \"thu\"], or leave `days` out for every day"),
        );
        return None;
    }
    let names: Vec<&str> = DAYS.iter().map(|(n, _)| *n).collect();
    let mut out = Vec::new();
    for item in items {
        let lower = item.value.to_ascii_lowercase();
        let found = DAYS
            .iter()
            .find(|(name, _)| lower == *name || weekday_name(name) == lower);
        match found {
            Some((_, day)) if !out.contains(day) => out.push(*day),
            Some(_) => {}
            None => {
                let help = match suggest(&lower, names.iter().copied()) {
                    Some(s) => format!("did you mean \"{s}\"?"),
                    None => format!("use {}", quote_list(&names)),
                };
                f.cx.push(
                    diagnostic_at(
                        f,
                        &item,
                        format!("`{}` is not a day of the week", item.value),
                    )
                    .label("unknown day")
                    .help(help),
                );
                return None;
            }
        }
    }
    Some(out)
}

/// "mon" -> "monday": the full names are accepted too.
fn weekday_name(short: &str) -> &'static str {
    match short {
        "mon" => "monday",
        "tue" => "tuesday",
        "wed" => "wednesday",
        "thu" => "thursday",
        "fri" => "friday",
        "sat" => "saturday",
        _ => "sunday",
    }
}

fn diagnostic_at(f: &Field<'_, '_>, item: &At<String>, message: String) -> Diagnostic {
    Diagnostic::error(f.path(), item.span.clone(), message)
}

fn hours(f: &Field<'_, '_>) -> Option<Hours> {
    let text = f.str()?;
    let bad = |label: &str| {
        f.cx.push(
            f.error(format!("`{text}` is not a range of hours"))
                .label(label.to_string())
                .help("write the start and end as HH:MM-HH:MM in 24-hour time, e.g. \"09:00-16:00\" (the end is not included; \"24:00\" is midnight)"),
        );
        None
    };
    let Some((start, end)) = text.split_once('-') else {
        return bad("expected HH:MM-HH:MM");
    };
    let (Some(start), Some(end)) = (clock_time(start.trim()), clock_time(end.trim())) else {
        return bad("not HH:MM times");
    };
    let Some(start) = start else {
        return bad("24:00 is the end of a day, not a start");
    };
    if end.is_some_and(|end| end <= start) {
        let span = inner_span(f, text, 0, text.len());
        f.cx.push(
            Diagnostic::error(f.path(), span, format!("`{text}` ends before it starts"))
                .label("empty or overnight range")
                .help("a window's hours lie within one day, from 00:00 up to 24:00, e.g. \"09:00-16:00\""),
        );
        return None;
    }
    Some(Hours { start, end })
}

/// "HH:MM" as a time of day; "24:00" is `Some(None)`, the end of the day.
fn clock_time(text: &str) -> Option<Option<Time>> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (i8, i8) = (h.parse().ok()?, m.parse().ok()?);
    if (h, m) == (24, 0) {
        return Some(None);
    }
    Time::new(h, m, 0, 0).ok().map(Some)
}

fn timezone(f: &Field<'_, '_>) -> Option<(String, TimeZone)> {
    let name = f.str()?;
    match TimeZone::get(name) {
        Ok(tz) => Some((name.to_string(), tz)),
        Err(_) => {
            let known: Vec<String> = jiff::tz::db()
                .available()
                .map(|n| n.as_str().to_string())
                .collect();
            let help = match suggest(name, known.iter().map(String::as_str)) {
                Some(s) => format!("did you mean \"{s}\"?"),
                None => "use an IANA time zone name, e.g. \"Europe/Berlin\", \"America/New_York\" or \"UTC\"".to_string(),
            };
            f.cx.push(
                f.error(format!("`{name}` is not a time zone rollout knows"))
                    .label("unknown time zone")
                    .help(help),
            );
            None
        }
    }
}

fn freeze(f: &Field<'_, '_>) -> Option<Vec<(Date, Date)>> {
    let items = f.strings("freeze = [\"2026-12-20/2027-01-04\"]")?;
    let mut out = Vec::new();
    let mut ok = true;
    for item in &items {
        match freeze_range(&item.value) {
            Ok(range) => out.push(range),
            Err((label, help)) => {
                ok = false;
                f.cx.push(
                    diagnostic_at(f, item, format!("`{}` is not a freeze period", item.value))
                        .label(label)
                        .help(help),
                );
            }
        }
    }
    ok.then_some(out)
}

/// "2026-12-20/2027-01-04" (both days included), or one day "2026-12-25".
fn freeze_range(text: &str) -> Result<(Date, Date), (String, String)> {
    let example = "write the first and last day frozen, both included: \"2026-12-20/2027-01-04\" (or one day: \"2026-12-25\")".to_string();
    let (first, last) = text.split_once('/').unwrap_or((text, text));
    let parse = |s: &str| s.trim().parse::<Date>().ok();
    let (Some(first), Some(last)) = (parse(first), parse(last)) else {
        return Err(("expected YYYY-MM-DD/YYYY-MM-DD".into(), example));
    };
    if last < first {
        return Err(("the last day is before the first".into(), example));
    }
    let days = first
        .until(last)
        .ok()
        .map_or(i64::MAX, |s| i64::from(s.get_days()));
    if days >= MAX_FREEZE_DAYS {
        return Err((
            "longer than a year".into(),
            "a freeze that long leaves no window: split it, or pause the plan's use instead".into(),
        ));
    }
    Ok((first, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(days: &[Weekday], hours: Option<(&str, &str)>, zone: &str) -> Window {
        let time = |s: &str| clock_time(s).unwrap();
        Window {
            days: days.to_vec(),
            hours: hours.map(|(s, e)| Hours {
                start: time(s).unwrap(),
                end: time(e),
            }),
            timezone: TimeZone::get(zone).unwrap(),
            timezone_name: zone.to_string(),
            freeze: Vec::new(),
        }
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    const WEEKDAYS: [Weekday; 5] = [
        Weekday::Monday,
        Weekday::Tuesday,
        Weekday::Wednesday,
        Weekday::Thursday,
        Weekday::Friday,
    ];
    const EVERY_DAY: [Weekday; 7] = [
        Weekday::Monday,
        Weekday::Tuesday,
        Weekday::Wednesday,
        Weekday::Thursday,
        Weekday::Friday,
        Weekday::Saturday,
        Weekday::Sunday,
    ];

    #[test]
    fn office_hours_follow_the_wall_clock_across_the_spring_change() {
        // Europe/Berlin moves from UTC+1 to UTC+2 on Sunday 2026-03-29.
        let w = window(&WEEKDAYS, Some(("09:00", "16:00")), "Europe/Berlin");
        // Friday 15:59 CET is open, 16:00 CET is not.
        assert!(w.is_open(at("2026-03-27T14:59:00Z")));
        assert!(!w.is_open(at("2026-03-27T15:00:00Z")));
        // Monday 09:00 is 07:00 UTC now, not 08:00.
        let next = w.next_open(at("2026-03-27T15:00:00Z")).unwrap();
        assert_eq!(next, at("2026-03-30T07:00:00Z"));
        assert_eq!(w.show(next), "Mon 2026-03-30 09:00 CEST");
        assert!(!w.is_open(at("2026-03-30T06:59:59Z")));
        assert!(w.is_open(at("2026-03-30T13:59:59Z")));
        assert!(!w.is_open(at("2026-03-30T14:00:00Z")));
    }

    #[test]
    fn a_window_on_the_day_clocks_change_is_right() {
        let w = window(&EVERY_DAY, Some(("09:00", "16:00")), "Europe/Berlin");
        // Saturday evening (CET) to Sunday 09:00, which is already CEST.
        let next = w.next_open(at("2026-03-28T20:00:00Z")).unwrap();
        assert_eq!(next, at("2026-03-29T07:00:00Z"));
        // Autumn: Sunday 2026-10-25 goes back to UTC+1; 09:00 is 08:00 UTC.
        let next = w.next_open(at("2026-10-24T20:00:00Z")).unwrap();
        assert_eq!(next, at("2026-10-25T08:00:00Z"));
        assert_eq!(w.show(next), "Sun 2026-10-25 09:00 CET");
    }

    #[test]
    fn a_start_that_the_clocks_skip_opens_when_they_jump() {
        // 02:30 never happens in Berlin on 2026-03-29: at 02:00 CET the clocks read 03:00 CEST.
        let w = window(&EVERY_DAY, Some(("02:30", "04:00")), "Europe/Berlin");
        let next = w.next_open(at("2026-03-29T00:00:00Z")).unwrap();
        assert_eq!(next, at("2026-03-29T01:00:00Z"));
        assert_eq!(w.show(next), "Sun 2026-03-29 03:00 CEST");
        assert!(!w.is_open(at("2026-03-29T00:59:59Z")));
    }

    #[test]
    fn an_hour_that_happens_twice_is_open_both_times() {
        // 02:00-03:00 happens twice in Berlin on 2026-10-25 (CEST, then CET).
        let w = window(&EVERY_DAY, Some(("02:00", "02:30")), "Europe/Berlin");
        assert!(w.is_open(at("2026-10-25T00:10:00Z")));
        assert!(!w.is_open(at("2026-10-25T00:40:00Z")));
        assert!(w.is_open(at("2026-10-25T01:10:00Z")));
        // Between the two, it next opens at the second 02:00.
        assert_eq!(
            w.next_open(at("2026-10-25T00:40:00Z")),
            Some(at("2026-10-25T01:00:00Z"))
        );
    }

    #[test]
    fn new_york_changes_on_its_own_dates() {
        // America/New_York moves to UTC-4 on 2026-03-08, two weeks before Europe.
        let w = window(&WEEKDAYS, Some(("09:00", "17:00")), "America/New_York");
        assert_eq!(
            w.next_open(at("2026-03-06T22:00:00Z")),
            Some(at("2026-03-09T13:00:00Z"))
        );
        assert_eq!(
            w.next_open(at("2026-02-27T22:00:00Z")),
            Some(at("2026-03-02T14:00:00Z"))
        );
    }

    #[test]
    fn a_freeze_closes_whole_days_in_the_zone() {
        let mut w = window(&WEEKDAYS, Some(("09:00", "16:00")), "Europe/Berlin");
        w.freeze = vec![("2026-12-20".parse().unwrap(), "2027-01-04".parse().unwrap())];
        assert!(!w.is_open(at("2026-12-21T10:00:00Z")));
        // Tuesday 2027-01-05 09:00 CET.
        assert_eq!(
            w.next_open(at("2026-12-18T16:00:00Z")),
            Some(at("2027-01-05T08:00:00Z"))
        );
    }

    #[test]
    fn whole_days_and_midnight_ends() {
        let w = window(&[Weekday::Saturday], None, "UTC");
        assert!(w.is_open(at("2026-03-28T00:00:00Z")));
        assert!(w.is_open(at("2026-03-28T23:59:59Z")));
        assert_eq!(
            w.next_open(at("2026-03-29T00:00:00Z")),
            Some(at("2026-04-04T00:00:00Z"))
        );
        let evening = window(&EVERY_DAY, Some(("20:00", "24:00")), "UTC");
        assert!(evening.is_open(at("2026-03-28T23:59:59Z")));
        assert!(!evening.is_open(at("2026-03-29T00:00:00Z")));
        assert_eq!(evening.to_string(), "every day, 20:00-24:00 UTC");
    }

    #[test]
    fn ranges_parse_or_say_why_not() {
        assert_eq!(
            clock_time("09:30"),
            Some(Some(Time::new(9, 30, 0, 0).unwrap()))
        );
        assert_eq!(clock_time("24:00"), Some(None));
        assert_eq!(clock_time("9:30"), None);
        assert_eq!(clock_time("25:00"), None);
        assert!(freeze_range("2026-12-25").is_ok());
        assert!(freeze_range("2027-01-04/2026-12-20").is_err());
        assert!(freeze_range("2026-01-01/2027-06-01").is_err());
    }
}
