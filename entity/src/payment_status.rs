//! The payment status machine.
//!
//! `pending → processing → succeeded | failed | cancelled`, `pending → succeeded | failed |
//! cancelled`, `succeeded → refunded`. Final states never move backwards; every allowed move
//! produces exactly one event of the matching type.

use crate::event::EventType;

crate::status::text_enum! {
    /// Where a payment is in its life; see the module documentation for the allowed moves.
    PaymentStatus {
        Pending = "pending",
        Processing = "processing",
        Succeeded = "succeeded",
        Failed = "failed",
        Cancelled = "cancelled",
        Refunded = "refunded",
    }
}

/// Why a status change was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {from} payment cannot become {to}")]
pub struct InvalidTransition {
    pub from: PaymentStatus,
    pub to: PaymentStatus,
}

impl PaymentStatus {
    /// No provider message may move a payment out of these (except succeeded → refunded).
    pub const fn is_final(self) -> bool {
        !matches!(self, PaymentStatus::Pending | PaymentStatus::Processing)
    }

    /// Checks a move and names the event it produces.
    pub fn transition(self, to: PaymentStatus) -> Result<EventType, InvalidTransition> {
        use PaymentStatus::*;
        let allowed = matches!(
            (self, to),
            (Pending, Processing | Succeeded | Failed | Cancelled)
                | (Processing, Succeeded | Failed | Cancelled)
                | (Succeeded, Refunded)
        );
        if allowed {
            Ok(EventType::for_status(to))
        } else {
            Err(InvalidTransition { from: self, to })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PaymentStatus::*;
    use super::*;

    #[test]
    fn allowed_moves_produce_their_event() {
        assert_eq!(
            Pending.transition(Processing),
            Ok(EventType::PaymentProcessing)
        );
        assert_eq!(
            Pending.transition(Succeeded),
            Ok(EventType::PaymentSucceeded)
        );
        assert_eq!(Processing.transition(Failed), Ok(EventType::PaymentFailed));
        assert_eq!(
            Processing.transition(Cancelled),
            Ok(EventType::PaymentCancelled)
        );
        assert_eq!(
            Succeeded.transition(Refunded),
            Ok(EventType::PaymentRefunded)
        );
    }

    #[test]
    fn final_states_never_move_backwards() {
        for from in [Succeeded, Failed, Cancelled, Refunded] {
            assert!(from.is_final());
            for &to in PaymentStatus::ALL {
                if (from, to) == (Succeeded, Refunded) {
                    continue;
                }
                assert!(
                    from.transition(to).is_err(),
                    "{from} -> {to} must be refused"
                );
            }
        }
    }

    #[test]
    fn no_self_transitions_and_no_return_to_pending() {
        for &s in PaymentStatus::ALL {
            assert!(s.transition(s).is_err());
            assert!(s.transition(Pending).is_err());
        }
        assert!(Pending.transition(Refunded).is_err());
        assert!(!Pending.is_final() && !Processing.is_final());
    }

    #[test]
    fn statuses_round_trip_through_strings() {
        for &s in PaymentStatus::ALL {
            assert_eq!(PaymentStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(PaymentStatus::parse("paid"), None);
    }
}
