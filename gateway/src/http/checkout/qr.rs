//! QR codes of checkout URLs (`GET /v1/payments/{id}/qr`), so a customer on a desktop can
//! finish on their phone (mobile money is paid from the phone). Public like the checkout URL
//! it encodes: the payment id is the capability, and the code says nothing the URL does not.

use entity::ids::PaymentId;
use poem::web::{Data, Path, Query};
use poem::{IntoResponse, Response, handler};
use qrcode::Color;
use qrcode::render::svg;
use serde::Deserialize;

use crate::http::api::error::ApiError;
use crate::http::state::AppState;
use crate::payments::service as payments;

/// Light modules around the code, as the standard asks, so scanners find its edges.
const QUIET_ZONE: usize = 4;
/// Pixels per module in the PNG: about 300 px for a checkout URL, sharp on any screen.
const PNG_SCALE: usize = 8;

use crate::payments::qr::code;

/// The QR code as a standalone SVG document, labelled for screen readers.
pub fn svg(data: &str, label: &str) -> Result<String, qrcode::types::QrError> {
    let image = code(data)?
        .render::<svg::Color>()
        .min_dimensions(240, 240)
        .quiet_zone(true)
        .build();
    let label = label
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('"', "&quot;");
    Ok(image.replacen(
        "<svg ",
        &format!(r#"<svg role="img" aria-label="{label}" "#),
        1,
    ))
}

/// The QR code as a grayscale PNG.
pub fn png(data: &str) -> Result<Vec<u8>, String> {
    let code = code(data).map_err(|e| e.to_string())?;
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET_ZONE) * PNG_SCALE;
    let mut pixels = vec![255u8; side * side];
    for (i, color) in colors.iter().enumerate() {
        if *color == Color::Dark {
            let (mx, my) = (i % modules + QUIET_ZONE, i / modules + QUIET_ZONE);
            for y in my * PNG_SCALE..(my + 1) * PNG_SCALE {
                pixels[y * side + mx * PNG_SCALE..y * side + (mx + 1) * PNG_SCALE].fill(0);
            }
        }
    }
    let mut out = Vec::new();
    let side = u32::try_from(side).map_err(|e| e.to_string())?;
    let mut encoder = png::Encoder::new(&mut out, side, side);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
    writer
        .write_image_data(&pixels)
        .map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())?;
    Ok(out)
}

#[derive(Deserialize)]
pub struct QrParams {
    format: Option<String>,
}

/// `GET /v1/payments/{id}/qr[?format=svg|png]`: the payment's checkout URL as a QR code.
#[handler]
pub async fn payment_qr(
    state: Data<&AppState>,
    Path(id): Path<String>,
    Query(params): Query<QrParams>,
) -> Response {
    let not_found = || ApiError::not_found("payment", &id).into_response();
    let Some(payment_id) = PaymentId::parse(&id) else {
        return not_found();
    };
    let payment = match payments::find_with_checkout(&state.db, &payment_id).await {
        Ok(Some(p)) => p,
        Ok(None) => return not_found(),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let Some(url) = payment.checkout_url.as_deref() else {
        return not_found();
    };
    // The code of a payment never changes; caches may keep it.
    let image = |content_type: &str, body: poem::Body| {
        Response::builder()
            .header("cache-control", "public, max-age=3600")
            .content_type(content_type)
            .body(body)
    };
    // A URL too long for a QR code is the payment's (a long return_url), not a failure of
    // ours: such a payment has no qr_code_url, and its code is a 422 saying why.
    let too_long = || {
        ApiError::invalid(
            "id",
            "qr_code_unavailable",
            "This payment's checkout URL is too long for a QR code; send the customer the checkout_url itself.",
        )
        .into_response()
    };
    match params.format.as_deref() {
        None | Some("svg") => match svg(url, "QR code of the checkout page") {
            Ok(svg) => image("image/svg+xml", svg.into()),
            Err(_) => too_long(),
        },
        Some("png") => match png(url) {
            Ok(png) => image("image/png", png.into()),
            Err(_) => too_long(),
        },
        Some(_) => ApiError::invalid("format", "format_invalid", "format must be svg or png.")
            .into_response(),
    }
}
