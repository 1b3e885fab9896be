//! The QR code of a payment's checkout URL: what it holds, and whether it can.

use qrcode::{EcLevel, QrCode};

/// The code of `data`. Medium error correction: survives a smudged screen, stays small for a
/// URL.
pub fn code(data: &str) -> Result<QrCode, qrcode::types::QrError> {
    QrCode::with_error_correction_level(data, EcLevel::M)
}

/// Whether a QR code can hold `url` (a checkout URL with a 2,000-character `return_url` may
/// not): a payment whose URL does not fit carries no `qr_code_url`.
pub fn fits(url: &str) -> bool {
    code(url).is_ok()
}
