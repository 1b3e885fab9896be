//! Payments: the objects merchants see, the checks a request passes, the test cards, their
//! creation and the service that moves them (one event per change, in the same transaction),
//! refunds, and the search people use to find them.

pub mod cards;
pub mod creation;
pub mod figures;
pub mod inbound;
pub mod objects;
pub mod qr;
pub mod refunds;
pub mod search;
pub mod service;
pub mod validation;
