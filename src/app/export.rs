//! The current view as a picture file, drawn by the library's renderers (the same pictures as
//! the export).

use super::model::Model;
use super::ui_state::{UiState, View};
use super::views;
use std::path::Path;

/// Writes the current view as SVG or PNG (by extension); the message says what was written.
pub fn export_view(m: &Model, ui: &UiState, path: &Path) -> Result<String, String> {
    let d = m.doc().ok_or("no trace open")?;
    let a = d.analysis.as_ref().ok_or("not analysed yet")?;
    let title = format!("{} · {}", d.title(), a.result.status.name());
    let png = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("png"));
    let bytes = match ui.view {
        View::Matrix => {
            let s = views::matrix::MAX_TEXTURE.min(d.n());
            let (vals, _) = views::matrix::reduce(&d.trace, a, ui.matrix.layer, s);
            crate::render::matrix_png(&vals, s)?
        }
        View::Backbone if png => crate::render::backbone::backbone(&title, &d.trace.tokens, &d.text, a.plan.spans, &a.result).png()?,
        View::Backbone => crate::render::backbone::backbone_svg(&title, &d.trace.tokens, &d.text, a.plan.spans, &a.result).into_bytes(),
        _ => {
            let style = if png { crate::render::text::TextStyle::raster() } else { Default::default() };
            let picture = crate::render::text::credit_picture(&title, &d.trace.tokens, &d.text, a.plan.spans, &a.result, &style);
            if png { picture.png()? } else { picture.svg().into_bytes() }
        }
    };
    crate::atomic::write_atomic(path, &bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(format!("wrote {}", path.display()))
}
