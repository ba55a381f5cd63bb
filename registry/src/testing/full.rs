//! A registry that is full at a chosen size without a small file system:
//! SQLite's `max_page_count`, asked for with a `max_page_count=N` query
//! parameter on the registry's location, set on every connection of the
//! pool. Only builds with the `testing` feature know the parameter;
//! elsewhere SQLite refuses it as unknown.

use crate::store::Session;

const PARAMETER: &str = "max_page_count";

/// `location` (a SQLite file path or `sqlite:` URL) for a registry that
/// cannot grow past `pages` pages: writes that need more fail as on a full
/// disk (`SQLITE_FULL`). A limit below the file's current size is raised to
/// it by SQLite.
pub fn limited_to_pages(location: &str, pages: u64) -> String {
    let separator = if location.contains('?') { '&' } else { '?' };
    format!("{location}{separator}{PARAMETER}={pages}")
}

/// `location` without the test-only parameter, and the session settings it
/// asked for.
pub(crate) fn session_settings(location: &str) -> (String, Session) {
    let Some((base, query)) = location.split_once('?') else {
        return (location.to_string(), Session::default());
    };
    let mut session = Session::default();
    let mut kept = Vec::new();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some((PARAMETER, pages)) => session.max_page_count = pages.parse().ok(),
            _ => kept.push(pair),
        }
    }
    let location = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (location, session)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parameter_is_taken_out_and_others_kept() {
        let (location, session) = session_settings(&limited_to_pages("/tmp/r.db", 40));
        assert_eq!(
            (location.as_str(), session.max_page_count),
            ("/tmp/r.db", Some(40))
        );
        let (location, session) = session_settings(&limited_to_pages("sqlite:///tmp/r.db?mode=rwc", 7));
        assert_eq!(
            (location.as_str(), session.max_page_count),
            ("sqlite:///tmp/r.db?mode=rwc", Some(7))
        );
        let (location, session) = session_settings("/tmp/r.db");
        assert_eq!((location.as_str(), session.max_page_count), ("/tmp/r.db", None));
    }
}
