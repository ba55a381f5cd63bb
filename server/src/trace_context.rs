//! W3C Trace Context (`traceparent`) on gRPC and HTTP calls: a caller's
//! trace id is read, the call gets a span id of its own as a child of the
//! caller's span, both go into the call's tracing span (so every log line
//! of the call names the caller's trace), and the response carries
//! `traceparent` with the call's own span id. A call without a valid
//! `traceparent` gets nothing added: trace context costs only callers who
//! send it.
//!
//! Privacy: trace and span ids are random identifiers chosen by the
//! caller's tracing system; they carry no request contents.

use http::HeaderValue;

pub(crate) const TRACEPARENT: &str = "traceparent";

/// The caller's trace, and this call's place in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TraceContext {
    /// 32 lowercase hex digits, the caller's trace.
    pub trace_id: String,
    /// 16 lowercase hex digits: the caller's span, this call's parent.
    pub parent_id: String,
    /// 16 lowercase hex digits: this call's own span.
    pub span_id: String,
    /// The caller's trace flags (two hex digits; `01` = sampled).
    pub flags: String,
}

fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl TraceContext {
    /// Reads a `traceparent` header (`00-<trace id>-<parent id>-<flags>`);
    /// `None` when it is absent or malformed, as the W3C recommendation
    /// says: an invalid header is ignored, never an error. Versions above
    /// 00 are read by their first four fields.
    pub(crate) fn from_header(value: Option<&HeaderValue>) -> Option<TraceContext> {
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
        })
    }

    /// Fills the `trace_id`, `parent_id` and `span_id` fields a call's span
    /// was created with (empty).
    pub(crate) fn record(&self, span: &tracing::Span) {
        span.record("trace_id", self.trace_id.as_str());
        span.record("parent_id", self.parent_id.as_str());
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Option<TraceContext> {
        TraceContext::from_header(Some(&HeaderValue::from_str(text).unwrap()))
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
        assert_eq!(TraceContext::from_header(None), None);
    }
}
