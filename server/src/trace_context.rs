//! W3C Trace Context (`traceparent`, `tracestate`) on gRPC and HTTP calls:
//! a caller's trace id is read, the call gets a span id of its own as a
//! child of the caller's span, both go into the call's tracing span (so
//! every log line of the call names the caller's trace), and the response
//! carries `traceparent` with the call's own span id and the caller's
//! `tracestate` unchanged. A call without a valid `traceparent` gets
//! nothing added — trace context costs only callers who send it — unless
//! spans are exported (`otlp`): then the call starts a trace, and the
//! response's `traceparent` names it.
//!
//! Privacy: trace and span ids are random identifiers chosen by the
//! caller's tracing system; they carry no request contents. `tracestate`
//! is the caller's vendors' opaque data: it is returned and, with OTLP
//! export on, exported with the call's span, but never logged.

use http::{HeaderMap, HeaderValue};

pub(crate) const TRACEPARENT: &str = "traceparent";
pub(crate) const TRACESTATE: &str = "tracestate";

/// Longest `tracestate` kept, in bytes: the W3C recommendation asks that
/// at least 512 be propagated and lets longer ones be dropped.
const MAX_TRACESTATE_BYTES: usize = 512;
/// List members a `tracestate` may hold (W3C).
const MAX_TRACESTATE_MEMBERS: usize = 32;

/// The caller's trace, and this call's place in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TraceContext {
    /// 32 lowercase hex digits, the caller's trace.
    pub trace_id: String,
    /// 16 lowercase hex digits: the caller's span, this call's parent; empty
    /// for a trace this server started.
    pub parent_id: String,
    /// 16 lowercase hex digits: this call's own span.
    pub span_id: String,
    /// The caller's trace flags (two hex digits; `01` = sampled).
    pub flags: String,
    /// The caller's `tracestate`, when well formed: returned unchanged.
    pub state: Option<HeaderValue>,
}

fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl TraceContext {
    /// Reads a call's `traceparent` and `tracestate` headers; `None` when
    /// `traceparent` is absent or malformed. See [`TraceContext::parse`].
    pub(crate) fn from_headers(headers: &HeaderMap) -> Option<TraceContext> {
        let parent = headers.get(TRACEPARENT)?;
        let mut states = headers.get_all(TRACESTATE).iter();
        let state = match (states.next(), states.next()) {
            (None, _) => None,
            (Some(only), None) => Some(only.clone()),
            // Several header lines make one list (RFC 9110 field lines).
            (Some(first), Some(second)) => {
                let mut joined = first.as_bytes().to_vec();
                for more in [second].into_iter().chain(states) {
                    joined.push(b',');
                    joined.extend_from_slice(more.as_bytes());
                }
                HeaderValue::from_bytes(&joined).ok()
            }
        };
        Self::parse(Some(parent), state)
    }

    /// Reads a `traceparent` header (`00-<trace id>-<parent id>-<flags>`)
    /// and the `tracestate` that came with it; `None` when `traceparent` is
    /// absent or malformed, as the W3C recommendation says: an invalid
    /// header is ignored, never an error. Versions above 00 are read by
    /// their first four fields. A malformed `tracestate` is dropped and
    /// the `traceparent` kept.
    pub(crate) fn parse(value: Option<&HeaderValue>, state: Option<HeaderValue>) -> Option<TraceContext> {
        let text = value?.to_str().ok()?;
        let mut fields = text.split('-');
        let (version, trace_id, parent_id, flags) =
            (fields.next()?, fields.next()?, fields.next()?, fields.next()?);
        let valid = is_hex(version, 2)
            && version != "ff"
            && (version != "00" || fields.next().is_none())
            && is_hex(trace_id, 32)
            && trace_id.bytes().any(|b| b != b'0')
            && is_hex(parent_id, 16)
            && parent_id.bytes().any(|b| b != b'0')
            && is_hex(flags, 2);
        valid.then(|| TraceContext {
            trace_id: trace_id.to_string(),
            parent_id: parent_id.to_string(),
            span_id: format!("{:016x}", rand::random::<u64>().max(1)),
            flags: flags.to_string(),
            state: state.filter(|state| is_tracestate(state.as_bytes())),
        })
    }

    /// A trace this server started for a call that came without one (only
    /// while exporting spans: see `otlp::join_call`); it has no parent and
    /// no `tracestate`.
    pub(crate) fn root(trace_id: String, span_id: String, sampled: bool) -> TraceContext {
        TraceContext {
            trace_id,
            parent_id: String::new(),
            span_id,
            flags: if sampled { "01" } else { "00" }.to_string(),
            state: None,
        }
    }

    /// Fills the `trace_id`, `parent_id` and `span_id` fields a call's span
    /// was created with (empty); a trace the server started has no parent.
    pub(crate) fn record(&self, span: &tracing::Span) {
        span.record("trace_id", self.trace_id.as_str());
        if !self.parent_id.is_empty() {
            span.record("parent_id", self.parent_id.as_str());
        }
        span.record("span_id", self.span_id.as_str());
    }

    /// The `traceparent` a response carries: the caller's trace, this
    /// call's span.
    pub(crate) fn response_header(&self) -> HeaderValue {
        let mut value =
            HeaderValue::from_str(&format!("00-{}-{}-{}", self.trace_id, self.span_id, self.flags))
                .expect("hex digits and dashes");
        // Unique per call: never worth a place in HPACK's header table.
        value.set_sensitive(true);
        value
    }

    /// Puts `traceparent` (and the caller's `tracestate`) into a response's
    /// headers.
    pub(crate) fn answer(&self, headers: &mut HeaderMap) {
        headers.insert(TRACEPARENT, self.response_header());
        if let Some(state) = &self.state {
            headers.insert(TRACESTATE, state.clone());
        }
    }
}

/// A `tracestate` as the W3C Trace Context defines it: 1 to 32
/// comma-separated `key=value` members (empty members allowed between
/// them), no key twice, at most [`MAX_TRACESTATE_BYTES`] in all.
fn is_tracestate(text: &[u8]) -> bool {
    if text.len() > MAX_TRACESTATE_BYTES {
        return false;
    }
    let mut keys: Vec<&[u8]> = Vec::new();
    for member in text.split(|&b| b == b',') {
        let member = member.trim_ascii();
        if member.is_empty() {
            continue;
        }
        let Some(equals) = member.iter().position(|&b| b == b'=') else {
            return false;
        };
        let (key, value) = (&member[..equals], &member[equals + 1..]);
        if !is_tracestate_key(key) || !is_tracestate_value(value) || keys.contains(&key) {
            return false;
        }
        keys.push(key);
        if keys.len() > MAX_TRACESTATE_MEMBERS {
            return false;
        }
    }
    !keys.is_empty()
}

/// `simple-key` (a lowercase letter, then up to 255 of `a-z 0-9 _ - * /`)
/// or `tenant@system` (tenant: a lowercase letter or digit then up to 240
/// more; system: a lowercase letter then up to 13 more).
fn is_tracestate_key(key: &[u8]) -> bool {
    let rest = |part: &[u8], most: usize| {
        part.len() <= most
            && part
                .iter()
                .all(|&b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/'))
    };
    match key.iter().position(|&b| b == b'@') {
        None => matches!(key.first(), Some(b'a'..=b'z')) && rest(&key[1..], 255),
        Some(at) => {
            let (tenant, system) = (&key[..at], &key[at + 1..]);
            matches!(tenant.first(), Some(b'a'..=b'z' | b'0'..=b'9'))
                && rest(&tenant[1..], 240)
                && matches!(system.first(), Some(b'a'..=b'z'))
                && rest(&system[1..], 13)
        }
    }
}

/// 1 to 256 printable ASCII characters other than `,` and `=`, spaces
/// allowed except at the end.
fn is_tracestate_value(value: &[u8]) -> bool {
    !value.is_empty()
        && value.len() <= 256
        && value
            .iter()
            .all(|&b| matches!(b, 0x20..=0x2b | 0x2d..=0x3c | 0x3e..=0x7e))
        && value.last() != Some(&b' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Option<TraceContext> {
        TraceContext::parse(Some(&HeaderValue::from_str(text).unwrap()), None)
    }

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn with_state(states: &[&str]) -> Option<HeaderValue> {
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, HeaderValue::from_static(PARENT));
        for state in states {
            headers.append(TRACESTATE, HeaderValue::from_str(state).unwrap());
        }
        TraceContext::from_headers(&headers).unwrap().state
    }

    #[test]
    fn a_valid_traceparent_makes_this_call_a_child_of_the_callers_span() {
        let trace = parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(trace.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(trace.parent_id, "00f067aa0ba902b7");
        assert_eq!(trace.flags, "01");
        assert!(is_hex(&trace.span_id, 16) && trace.span_id != trace.parent_id);
        let header = trace.response_header();
        assert_eq!(
            header.to_str().unwrap(),
            format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01", trace.span_id)
        );
        // A later version with more fields is read by its first four.
        assert!(parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra").is_some());
    }

    #[test]
    fn a_malformed_traceparent_is_ignored() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        assert_eq!(TraceContext::parse(None, None), None);
    }

    #[test]
    fn a_well_formed_tracestate_comes_back_unchanged() {
        for good in [
            "congo=t61rcWkgMzE",
            "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
            "rojo=00f067aa0ba902b7 , ,\tcongo=t61rcWkgMzE",
            "tenant1@vendor=a b!c~, x/y*z_-=1",
        ] {
            assert_eq!(with_state(&[good]).unwrap(), good, "{good:?}");
        }
        // Several header lines are one list.
        assert_eq!(with_state(&["a=1", "b=2"]).unwrap(), "a=1,b=2");
        assert_eq!(with_state(&[]), None);
        let mut context = parse(PARENT).unwrap();
        context.state = with_state(&["rojo=00f067aa0ba902b7"]);
        let mut headers = HeaderMap::new();
        context.answer(&mut headers);
        assert_eq!(headers[TRACESTATE], "rojo=00f067aa0ba902b7");
        assert!(headers[TRACEPARENT].to_str().unwrap().starts_with("00-4bf92f"));
    }

    #[test]
    fn a_malformed_tracestate_is_dropped_and_the_traceparent_kept() {
        let many: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        for bad in [
            "Congo=t61rcWkgMzE".to_string(),
            "congo".to_string(),
            "congo=".to_string(),
            "congo=a=b".to_string(),
            "1abc=x".to_string(),
            "a@=x".to_string(),
            "a@vendorwaytoolong=x".to_string(),
            "a=1,a=2".to_string(),
            format!("k={}", "v".repeat(257)),
            // Nothing to return.
            String::new(),
            " , ".to_string(),
            many.join(","),
        ] {
            assert_eq!(with_state(&[&bad]), None, "{bad:?}");
        }
        // 32 members is the most.
        assert!(with_state(&[&many[..32].join(",")]).is_some());
        // Too long as a whole, each member fine.
        let long = format!("a={},b={}", "v".repeat(256), "v".repeat(256));
        assert_eq!(with_state(&[&long]), None);
        // The traceparent is kept all the same.
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, HeaderValue::from_static(PARENT));
        headers.insert(TRACESTATE, HeaderValue::from_static("Bad"));
        assert!(TraceContext::from_headers(&headers).is_some());
        // A tracestate without a valid traceparent is ignored with it.
        headers.insert(TRACEPARENT, HeaderValue::from_static("00-xyz"));
        headers.insert(TRACESTATE, HeaderValue::from_static("a=1"));
        assert_eq!(TraceContext::from_headers(&headers), None);
    }
}
