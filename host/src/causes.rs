//! An error and its causes as one line, for every layer's messages.

/// The message and, `: `-separated, each cause that adds something
/// (`cannot connect to ADDR: Connection refused (os error 111)`).
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let line = inner.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        cause = inner.source();
    }
    text
}
