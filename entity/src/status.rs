//! The closed sets of values stored as text: statuses, levels, providers, outcomes.
//!
//! Each is a sea-orm `ActiveEnum` used directly in its table's model, so a row read from the
//! database is either one of the known values or a read error — never a string compared with
//! a literal somewhere else, and never a corrupt value quietly turned into a default.

/// Declares a text-backed enum with its wire names, `ALL`, `as_str`, `parse` and `Display`.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            sea_orm::EnumIter, sea_orm::DeriveActiveEnum,
            serde::Serialize, serde::Deserialize,
        )]
        #[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
        #[sea_orm(rs_type = "String", db_type = "Text")]
        pub enum $name {
            $(
                $(#[$vmeta])*
                #[sea_orm(string_value = $text)]
                #[serde(rename = $text)]
                #[cfg_attr(feature = "openapi", oai(rename = $text))]
                $variant,
            )+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            pub fn parse(s: &str) -> Option<$name> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s)
            }

            /// The accepted names, for error messages: `a, b or c`.
            pub fn names() -> String {
                let names: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                match names.split_last() {
                    Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
                    _ => names.join(""),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub(crate) use text_enum;

text_enum! {
    /// A webhook delivery: due (`pending`), claimed by a worker (`processing`), or final.
    DeliveryStatus {
        Pending = "pending",
        Processing = "processing",
        Succeeded = "succeeded",
        Failed = "failed",
    }
}

text_enum! {
    /// Whether an endpoint receives events.
    EndpointStatus {
        Enabled = "enabled",
        Disabled = "disabled",
    }
}

text_enum! {
    /// A refund: reserved and sent to the provider (`pending`), then settled.
    RefundStatus {
        Pending = "pending",
        Succeeded = "succeeded",
        Failed = "failed",
    }
}

text_enum! {
    /// Why a refund was made (Stripe's reasons), when the merchant says: a payment made twice,
    /// one the merchant believes fraudulent, or the customer's request.
    RefundReason {
        Duplicate = "duplicate",
        Fraudulent = "fraudulent",
        RequestedByCustomer = "requested_by_customer",
    }
}

text_enum! {
    /// What moved a merchant's money (Stripe's names): a payment's funds (`charge`), a
    /// `refund` or `payout` reserved, its release when it failed (`refund_failure`,
    /// `payout_failure`), or an operator's `adjustment`.
    BalanceTransactionType {
        Charge = "charge",
        Refund = "refund",
        RefundFailure = "refund_failure",
        Payout = "payout",
        PayoutFailure = "payout_failure",
        Adjustment = "adjustment",
    }
}

text_enum! {
    /// Whether a balance transaction's funds can be paid out yet.
    BalanceTransactionStatus {
        Pending = "pending",
        Available = "available",
    }
}

text_enum! {
    /// The ledger's accounts. A merchant's own: `available` (can be refunded or paid out) and
    /// `pending` (not yet settled). The counter-accounts money comes from or goes to:
    /// `customers` (payments), `refunds`, `payouts` and `adjustments`.
    LedgerAccount {
        Available = "available",
        Pending = "pending",
        Customers = "customers",
        Refunds = "refunds",
        Payouts = "payouts",
        Adjustments = "adjustments",
    }
}

text_enum! {
    /// A difference between Payrail's ledger and a provider's report:
    /// - `missing_at_provider`: Payrail counts money the provider has no trace of;
    /// - `status_mismatch`: the provider reports another outcome than Payrail's;
    /// - `amount_mismatch`: the provider moved another amount;
    /// - `refund_mismatch`: the provider refunded another total than Payrail counts;
    /// - `late_success`: the provider reported success after Payrail called the payment over.
    ReconciliationKind {
        MissingAtProvider = "missing_at_provider",
        StatusMismatch = "status_mismatch",
        AmountMismatch = "amount_mismatch",
        RefundMismatch = "refund_mismatch",
        LateSuccess = "late_success",
    }
}

text_enum! {
    /// `open` until a later run finds the difference gone (`matched`) or an operator settles
    /// it (`resolved`).
    ReconciliationStatus {
        Open = "open",
        Matched = "matched",
        Resolved = "resolved",
    }
}

text_enum! {
    /// Log store levels, in increasing severity.
    LogLevel {
        Debug = "debug",
        Info = "info",
        Warning = "warning",
        Error = "error",
        Critical = "critical",
    }
}

impl LogLevel {
    /// Error and critical entries are the ones kept in the recent cache.
    pub fn is_alarming(self) -> bool {
        self >= LogLevel::Error
    }
}

text_enum! {
    /// The providers a payment can go through.
    Provider {
        Simulated = "simulated",
        Stripe = "stripe",
        Moneroo = "moneroo",
        Ebilling = "ebilling",
    }
}

text_enum! {
    /// What an inbound provider event did.
    ProviderEventOutcome {
        /// It moved a payment (or a refund).
        Applied = "applied",
        /// Recorded only: a duplicate state, or a late event for a final payment.
        Ignored = "ignored",
        /// A type Payrail does not act on.
        UnknownType = "unknown_type",
        /// About a payment Payrail does not know.
        UnknownPayment = "unknown_payment",
        /// A success for a payment already final: recorded, flagged, nothing moved.
        RequiresReconciliation = "requires_reconciliation",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::ActiveEnum;

    #[test]
    fn values_round_trip_through_their_names_and_the_database_value() {
        for s in DeliveryStatus::ALL {
            assert_eq!(DeliveryStatus::parse(s.as_str()), Some(*s));
            assert_eq!(s.to_value(), s.as_str());
            assert_eq!(DeliveryStatus::try_from_value(&s.to_value()).ok(), Some(*s));
        }
        assert!(DeliveryStatus::try_from_value(&"paid".to_string()).is_err());
        assert_eq!(Provider::parse("stripe"), Some(Provider::Stripe));
        assert_eq!(Provider::parse("Stripe"), None);
        assert_eq!(EndpointStatus::names(), "enabled or disabled");
        assert_eq!(LogLevel::names(), "debug, info, warning, error or critical");
    }

    #[test]
    fn levels_are_ordered_by_severity() {
        assert!(LogLevel::Critical.is_alarming() && LogLevel::Error.is_alarming());
        assert!(!LogLevel::Warning.is_alarming());
        assert!(LogLevel::Debug < LogLevel::Info);
    }

    #[test]
    fn serde_uses_the_wire_names() {
        assert_eq!(
            serde_json::to_string(&ProviderEventOutcome::UnknownType).unwrap(),
            "\"unknown_type\""
        );
    }
}

text_enum! {
    /// What a dashboard user may do: `owner` everything (API keys too), `developer` act on
    /// payments and webhooks, `viewer` only look.
    UserRole {
        Owner = "owner",
        Developer = "developer",
        Viewer = "viewer",
    }
}

text_enum! {
    /// A merchant's usage plan: `unlimited` has no quota (the default for a new merchant
    /// unless the operator sets `PAYRAIL_DEFAULT_PLAN`), `free` and `pro` have set monthly
    /// limits, `custom` the merchant's own (`usage_limits`).
    Plan {
        Unlimited = "unlimited",
        Free = "free",
        Pro = "pro",
        Custom = "custom",
    }
}

text_enum! {
    /// A payout's state: `pending` (recorded, not yet at the provider), `processing` (the
    /// provider has it), then `succeeded` or `failed`, which are final.
    PayoutStatus {
        Pending = "pending",
        Processing = "processing",
        Succeeded = "succeeded",
        Failed = "failed",
    }
}

impl PayoutStatus {
    /// Final states never move again.
    pub fn is_final(self) -> bool {
        matches!(self, PayoutStatus::Succeeded | PayoutStatus::Failed)
    }

    /// Whether its amount is taken from the merchant's available balance.
    pub fn holds_balance(self) -> bool {
        self != PayoutStatus::Failed
    }
}
