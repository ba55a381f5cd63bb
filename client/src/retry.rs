//! The retry policy: which failures of an idempotent call (Predict, the
//! reads) are worth another replica, and which mean a replica itself is in
//! trouble. Changes (Train, rollout, delete, cancel) are never retried: a
//! replica may have applied one before its answer was lost. Which replica
//! is tried next lives in `replicas`; which calls are idempotent, in the
//! client's methods.
//!
//! What a replica that dies produces, as measured against a real server
//! whose process stops: calls on a fresh connection fail UNAVAILABLE
//! "tcp connect error"; calls in flight when its connection breaks fail
//! UNKNOWN "transport error" (broken pipe); calls queued on that connection
//! but not yet sent fail CANCELLED "operation was canceled" (connection
//! closed). The last two are made by this process's transport, never
//! answered by a server, and that is how they are told apart from a
//! server's own UNKNOWN or CANCELLED.

use std::error::Error;

use tonic::{Code, Status};

/// Whether an idempotent call that failed with `status` is worth trying
/// on another replica: the replica said it is unavailable, or the
/// connection to it broke before an answer came.
pub(crate) fn worth_another_replica(status: &Status) -> bool {
    match status.code() {
        Code::Unavailable => true,
        Code::Unknown | Code::Cancelled => replica_failed(status),
        _ => false,
    }
}

/// Whether `status` says the replica could not be reached or its
/// connection broke, so that other replicas should be preferred for a
/// while: the status was made here from a transport error (connection
/// refused, reset or closed), not received from a server, and is not the
/// call's own deadline running out. A replica's own UNAVAILABLE answer is
/// not a failure of the replica: it is up, and may say so only about this
/// call (a training job that runs on another replica).
pub(crate) fn replica_failed(status: &Status) -> bool {
    let mut transport = false;
    let mut cause = status.source();
    while let Some(error) = cause {
        if error.is::<tonic::TimeoutExpired>() {
            return false;
        }
        transport |= error.is::<tonic::transport::Error>();
        cause = error.source();
    }
    transport
}

/// Whether `status` says the connection broke while the call was under
/// way: made here from a transport error (UNKNOWN or CANCELLED, with that
/// error as its source), neither a server's answer (which has no source)
/// nor a connection that could not be made nor the call's own deadline
/// running out. The server may have carried the call out.
pub(crate) fn connection_lost(status: &Status) -> bool {
    if !matches!(status.code(), Code::Unknown | Code::Cancelled) {
        return false;
    }
    let mut cause = status.source();
    if cause.is_none() {
        return false;
    }
    while let Some(error) = cause {
        if error.is::<tonic::TimeoutExpired>() || error.is::<tonic::ConnectError>() {
            return false;
        }
        cause = error.source();
    }
    true
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// A real transport error, as the channel wraps every failure.
    fn transport_error() -> tonic::transport::Error {
        tonic::transport::Endpoint::from_shared("not a url".to_string()).unwrap_err()
    }

    fn local(code: Code) -> Status {
        let mut status = Status::new(code, "transport error");
        status.set_source(Arc::new(transport_error()));
        status
    }

    #[test]
    fn unavailable_is_retried_whoever_said_it() {
        let answered = Status::unavailable("job 7 is running on another server");
        assert!(worth_another_replica(&answered));
        assert!(!replica_failed(&answered));
        assert!(worth_another_replica(&local(Code::Unavailable)));
        assert!(replica_failed(&local(Code::Unavailable)));
    }

    #[test]
    fn a_broken_connection_is_retried_but_a_servers_own_answer_is_not() {
        for code in [Code::Unknown, Code::Cancelled] {
            assert!(worth_another_replica(&local(code)), "{code:?}");
            assert!(replica_failed(&local(code)), "{code:?}");
            let answered = Status::new(code, "from the server");
            assert!(!worth_another_replica(&answered), "{code:?}");
            assert!(!replica_failed(&answered), "{code:?}");
        }
    }

    #[test]
    fn answers_about_the_call_are_never_retried() {
        for code in [
            Code::InvalidArgument,
            Code::NotFound,
            Code::FailedPrecondition,
            Code::ResourceExhausted,
            Code::PermissionDenied,
            Code::Unauthenticated,
            Code::Internal,
            Code::DeadlineExceeded,
        ] {
            assert!(!worth_another_replica(&Status::new(code, "")), "{code:?}");
            assert!(!worth_another_replica(&local(code)), "{code:?}");
        }
    }

    #[test]
    fn a_deadline_that_ran_out_is_not_a_broken_connection() {
        let mut expired = Status::cancelled("Timeout expired");
        expired.set_source(Arc::new(tonic::TimeoutExpired(())));
        assert!(!worth_another_replica(&expired));
        assert!(!replica_failed(&expired));
        assert!(!connection_lost(&expired));
    }

    #[test]
    fn only_a_connection_that_broke_during_the_call_is_lost() {
        // As tonic reports a response body cut off: hyper's error as the
        // source of an UNKNOWN made here.
        let mut cut_off = Status::unknown("h2 protocol error: error reading a body from connection");
        cut_off.set_source(Arc::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe)));
        assert!(connection_lost(&cut_off));
        assert!(connection_lost(&local(Code::Cancelled)));
        // A server's own UNKNOWN, and a connection never made.
        assert!(!connection_lost(&Status::unknown("from the server")));
        let mut refused = Status::unknown("tcp connect error");
        refused.set_source(Arc::new(tonic::ConnectError(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )))));
        assert!(!connection_lost(&refused));
        assert!(!connection_lost(&local(Code::Unavailable)));
    }
}
