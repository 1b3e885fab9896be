//! The HTTP adapters over the slices' services: the merchant API ([`api`]), the dashboard
//! ([`dashboard`]) and the simulated provider's checkout ([`checkout`]), with what they share
//! (the state handlers reach, the middleware, CSRF tokens, the client's address).

pub mod api;
pub mod checkout;
pub mod client_address;
pub mod csrf;
pub mod dashboard;
pub mod middleware;
pub mod ops;
pub mod request;
pub mod state;
