//! Payment providers' outbound side, in one folder.
//!
//! Clients (below the payment service, which calls them to start payments): [`stripe`],
//! [`moneroo`], [`ebilling`] and the [`simulated`] provider (whose checkout page is an
//! adapter's, not this folder's), behind [`Providers`]; each speaks its provider's wire format, with
//! a timeout on every call, a circuit [`breaker`] per provider, and retries only where the call
//! is idempotent. Their configuration is [`settings`].
//!
//! Inbound events (above the payment service, which they move) live in
//! `crate::payments::inbound`. Nothing in a webhook body is
//! trusted before its signature is checked over the exact bytes, and for Moneroo and
//! eBilling not even then (the status is always re-queried).

pub mod breaker;
pub mod ebilling;
pub mod moneroo;
pub mod settings;
pub mod simulated;
pub mod stripe;

use entity::payment_status::PaymentStatus;
use entity::payments;
use entity::status::Provider;
use poem_openapi::Object;
use serde::{Deserialize, Serialize};
use tracing::Instrument as _;

use crate::core::text::Text;

use self::breaker::{Breaker, Breakers};
use self::settings::ProviderSettings;

/// What a provider answered when asked to start a payment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Started {
    pub reference: String,
    pub checkout_url: Option<String>,
    pub client_secret: Option<String>,
    /// A status other than pending, when the provider already reports one.
    pub status: Option<PaymentStatus>,
}

/// A provider's current view of a payment: `None` while it is still open there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Remote {
    pub status: Option<PaymentStatus>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("the provider did not answer within the timeout")]
    Timeout,
    #[error("the provider is failing; calls are suspended for a while (circuit open)")]
    CircuitOpen,
    /// No connection was made, so the request was never sent.
    #[error("could not connect to the provider: {0}")]
    Unreachable(String),
    /// The connection broke after the request may have been sent.
    #[error("could not reach the provider: {0}")]
    Transport(String),
    #[error("the provider refused the request (HTTP {status}): {message}")]
    Rejected { status: u16, message: String },
    #[error("the provider's answer could not be understood: {0}")]
    Malformed(String),
    #[error("this provider has no refund API")]
    RefundNotSupported,
    #[error("this provider has no cancel API")]
    CancelNotSupported,
    #[error("the provider is not configured")]
    NotConfigured,
    /// Payrail does not send this through this provider (checked before any call).
    #[error("the provider cannot do this here: {0}")]
    Unsupported(&'static str),
    /// The object's mode is not the mode of the credentials configured for its provider: a
    /// test object never reaches live credentials, nor a live one test credentials.
    #[error("{provider} has {} credentials here, and this is a {} object", mode(*.configured_live), mode(*.livemode))]
    ModeMismatch {
        provider: Provider,
        livemode: bool,
        configured_live: bool,
    },
}

fn mode(live: bool) -> &'static str {
    if live { "live" } else { "test" }
}

impl ProviderError {
    /// Whether this counts against the provider's health (a 4xx is our request's fault).
    fn is_provider_fault(&self) -> bool {
        match self {
            ProviderError::Timeout
            | ProviderError::Unreachable(_)
            | ProviderError::Transport(_)
            | ProviderError::Malformed(_) => true,
            ProviderError::Rejected { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    /// Whether asking again later may get an answer (nothing was decided).
    pub fn is_transient(&self) -> bool {
        match self {
            ProviderError::Timeout
            | ProviderError::Unreachable(_)
            | ProviderError::Transport(_)
            | ProviderError::CircuitOpen => true,
            ProviderError::Rejected { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    /// Whether the provider certainly did not act on the request: it was never sent, or the
    /// provider refused it (a 4xx). After a timeout, a broken connection, a 5xx or an answer
    /// that could not be read, it may have: money must then be treated as possibly moved.
    pub fn certainly_not_acted_on(&self) -> bool {
        match self {
            ProviderError::Unreachable(_)
            | ProviderError::CircuitOpen
            | ProviderError::NotConfigured
            | ProviderError::Unsupported(_)
            | ProviderError::ModeMismatch { .. }
            | ProviderError::RefundNotSupported
            | ProviderError::CancelNotSupported => true,
            ProviderError::Rejected { status, .. } => *status < 500,
            ProviderError::Timeout | ProviderError::Transport(_) | ProviderError::Malformed(_) => {
                false
            }
        }
    }

    /// The merchant's 422 for a call refused before it was made because of the key's mode or
    /// the gateway's configuration; `None` for any other error.
    pub fn as_refusal(&self) -> Option<crate::core::error::ValidationError> {
        use crate::core::error::ValidationError;
        match self {
            ProviderError::ModeMismatch {
                provider,
                livemode: true,
                ..
            } => Some(ValidationError::new(
                "provider",
                "livemode_mismatch",
                format!(
                    "A live key cannot use {provider}: it has test credentials here (the simulated provider is for test keys)."
                ),
            )),
            ProviderError::ModeMismatch { provider, .. } => Some(ValidationError::new(
                "provider",
                "livemode_mismatch",
                format!(
                    "A test key cannot use {provider}: it has live credentials here. Use a live key, or the simulated provider."
                ),
            )),
            ProviderError::NotConfigured => Some(ValidationError::new(
                "provider",
                "provider_not_configured",
                "This provider is not configured on this gateway.",
            )),
            _ => None,
        }
    }

    fn from_reqwest(e: reqwest::Error) -> ProviderError {
        if e.is_timeout() {
            ProviderError::Timeout
        } else if e.is_connect() {
            ProviderError::Unreachable(e.to_string())
        } else {
            ProviderError::Transport(e.to_string())
        }
    }
}

/// A refusal before any call (the key's mode, the configuration) is the merchant's 422; any
/// other provider failure is the provider's.
impl From<ProviderError> for crate::core::error::ServiceError {
    fn from(e: ProviderError) -> crate::core::error::ServiceError {
        match e.as_refusal() {
            Some(refusal) => refusal.into(),
            None => crate::core::error::ServiceError::Provider(e.to_string()),
        }
    }
}

/// Who pays: what the providers ask for (and what a payment shows of it).
#[derive(Object, Clone, Serialize, Deserialize, Debug, PartialEq, Default)]
#[oai(deny_unknown_fields)]
pub struct Customer {
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<Text>,
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<Text>,
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<Text>,
}

/// The configured providers.
pub struct Providers {
    pub stripe: Option<stripe::Stripe>,
    pub moneroo: Option<moneroo::Moneroo>,
    pub ebilling: Option<ebilling::Ebilling>,
}

/// A payment as a provider needs it to start.
pub struct StartRequest<'a> {
    pub payment: &'a payments::Model,
    pub customer: Option<&'a Customer>,
    pub metadata: &'a std::collections::BTreeMap<String, String>,
}

impl Providers {
    pub fn new(settings: &ProviderSettings) -> Result<Providers, reqwest::Error> {
        let client = || {
            reqwest::Client::builder()
                .timeout(settings.timeout)
                .connect_timeout(settings.timeout.min(std::time::Duration::from_secs(5)))
                .user_agent(concat!("Payrail/", env!("CARGO_PKG_VERSION")))
                .build()
        };
        let breaker = || Breakers::new(settings.breaker_threshold, settings.breaker_cooldown);
        Ok(Providers {
            stripe: settings
                .stripe
                .clone()
                .map(|s| client().map(|c| stripe::Stripe::new(s, c, breaker())))
                .transpose()?,
            moneroo: settings
                .moneroo
                .clone()
                .map(|s| client().map(|c| moneroo::Moneroo::new(s, c, breaker())))
                .transpose()?,
            ebilling: settings
                .ebilling
                .clone()
                .map(|s| client().map(|c| ebilling::Ebilling::new(s, c, breaker())))
                .transpose()?,
        })
    }

    /// Every configured provider's circuits, as `(provider, circuit, state code)`.
    pub fn circuits(&self) -> Vec<(&'static str, &'static str, i64)> {
        let mut all = Vec::new();
        let mut add = |provider: &'static str, b: &Breakers| {
            all.push((provider, "create", b.create.state_code()));
            all.push((provider, "query", b.query.state_code()));
        };
        if let Some(p) = &self.stripe {
            add("stripe", &p.breakers);
        }
        if let Some(p) = &self.moneroo {
            add("moneroo", &p.breakers);
        }
        if let Some(p) = &self.ebilling {
            add("ebilling", &p.breakers);
        }
        all
    }

    /// Starts the payment at its provider.
    pub async fn start(
        &self,
        provider: Provider,
        request: StartRequest<'_>,
    ) -> Result<Started, ProviderError> {
        self.check_mode(provider, request.payment.livemode)?;
        match provider {
            Provider::Stripe => {
                self.stripe
                    .as_ref()
                    .ok_or(ProviderError::NotConfigured)?
                    .start(&request)
                    .await
            }
            Provider::Moneroo => {
                self.moneroo
                    .as_ref()
                    .ok_or(ProviderError::NotConfigured)?
                    .start(&request)
                    .await
            }
            Provider::Ebilling => {
                self.ebilling
                    .as_ref()
                    .ok_or(ProviderError::NotConfigured)?
                    .start(&request)
                    .await
            }
            Provider::Simulated => Err(ProviderError::NotConfigured),
        }
    }

    /// Asks the provider where a payment stands.
    pub async fn status(&self, payment: &payments::Model) -> Result<Remote, ProviderError> {
        let reference = payment
            .provider_reference
            .as_deref()
            .ok_or_else(|| ProviderError::Malformed("payment has no provider reference".into()))?;
        self.check_mode(payment.provider, payment.livemode)?;
        match payment.provider {
            Provider::Stripe => {
                self.stripe
                    .as_ref()
                    .ok_or(ProviderError::NotConfigured)?
                    .status(reference)
                    .await
            }
            Provider::Moneroo => {
                self.moneroo
                    .as_ref()
                    .ok_or(ProviderError::NotConfigured)?
                    .status(payment, reference)
                    .await
            }
            Provider::Ebilling => {
                self.ebilling
                    .as_ref()
                    .ok_or(ProviderError::NotConfigured)?
                    .status(payment, reference)
                    .await
            }
            Provider::Simulated => Err(ProviderError::NotConfigured),
        }
    }

    /// Refuses, before any call, a provider whose credentials are not of `livemode`: the one
    /// gate every call to a provider goes through (start, status, cancel, refund, payout).
    pub fn check_mode(&self, provider: Provider, livemode: bool) -> Result<(), ProviderError> {
        match self.is_live(provider) {
            None => Err(ProviderError::NotConfigured),
            Some(configured_live) if configured_live != livemode => {
                Err(ProviderError::ModeMismatch {
                    provider,
                    livemode,
                    configured_live,
                })
            }
            Some(_) => Ok(()),
        }
    }

    /// Whether a provider's credentials move real money. The simulated provider never does.
    pub fn is_live(&self, provider: Provider) -> Option<bool> {
        match provider {
            Provider::Simulated => Some(false),
            Provider::Stripe => self.stripe.as_ref().map(stripe::Stripe::is_live),
            Provider::Moneroo => self.moneroo.as_ref().map(moneroo::Moneroo::is_live),
            Provider::Ebilling => self.ebilling.as_ref().map(ebilling::Ebilling::is_live),
        }
    }

    /// Cancels a payment at its provider before it is cancelled here, so the provider cannot
    /// capture money on a payment we call cancelled. Providers without a cancel API refuse.
    pub async fn cancel(&self, payment: &payments::Model) -> Result<(), ProviderError> {
        self.check_mode(payment.provider, payment.livemode)?;
        match payment.provider {
            Provider::Simulated => Ok(()),
            Provider::Stripe => {
                let reference = payment
                    .provider_reference
                    .as_deref()
                    .ok_or_else(|| ProviderError::Malformed("no PaymentIntent".into()))?;
                self.stripe
                    .as_ref()
                    .ok_or(ProviderError::NotConfigured)?
                    .cancel(reference)
                    .await
            }
            Provider::Moneroo | Provider::Ebilling => Err(ProviderError::CancelNotSupported),
        }
    }

    /// Refunds `amount` of a payment; returns the provider's refund reference.
    pub async fn refund(
        &self,
        payment: &payments::Model,
        idempotency_key: &str,
        amount: i64,
        reason: Option<entity::status::RefundReason>,
    ) -> Result<String, ProviderError> {
        self.check_mode(payment.provider, payment.livemode)?;
        match payment.provider {
            Provider::Stripe => {
                let reference = payment.provider_reference.as_deref().unwrap_or_default();
                let amount = entity::money::Currency::parse(&payment.currency)
                    .and_then(|c| stripe::to_stripe_amount(amount, c))
                    .ok_or_else(|| {
                        ProviderError::Malformed("refund amount not expressible for Stripe".into())
                    })?;
                self.stripe
                    .as_ref()
                    .ok_or(ProviderError::NotConfigured)?
                    .refund(reference, idempotency_key, amount, reason)
                    .await
            }
            Provider::Moneroo | Provider::Ebilling => Err(ProviderError::RefundNotSupported),
            Provider::Simulated => Err(ProviderError::NotConfigured),
        }
    }
}

/// Sends a request through a provider's breaker, turning HTTP errors into [`ProviderError`].
pub(crate) async fn call(
    breaker: &Breaker,
    request: reqwest::RequestBuilder,
) -> Result<serde_json::Value, ProviderError> {
    breaker.admit()?;
    // A span of its own, whose context the provider receives, so its side can join the trace.
    let span = tracing::info_span!(
        "provider.call",
        otel.kind = "client",
        http.response.status_code = tracing::field::Empty,
    );
    let request = match runtime::trace_context::traceparent_of(&span) {
        Some(value) => request.header(runtime::trace_context::TRACEPARENT, value),
        None => request,
    };
    let result = async {
        let response = request.send().await.map_err(ProviderError::from_reqwest)?;
        let status = response.status();
        tracing::Span::current().record("http.response.status_code", status.as_u16());
        let text = response.text().await.map_err(ProviderError::from_reqwest)?;
        if !status.is_success() {
            let message: String = text.chars().take(300).collect();
            return Err(ProviderError::Rejected {
                status: status.as_u16(),
                message,
            });
        }
        serde_json::from_str::<serde_json::Value>(&text)
            .map_err(|e| ProviderError::Malformed(e.to_string()))
    }
    .instrument(span)
    .await;
    breaker.record(match &result {
        Ok(_) => true,
        Err(e) => !e.is_provider_fault(),
    });
    result
}
