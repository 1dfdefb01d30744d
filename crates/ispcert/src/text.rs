//! Cutting text that came from elsewhere (billing messages, user input in messages) to what the
//! place it goes to accepts.

/// `s` cut to at most `max_bytes` bytes at a character boundary, a trailing `…` marking the cut
/// (counted in). Bytes, not characters: Kubernetes limits event notes by bytes (1024), and a
/// Cyrillic character takes two.
pub fn clip(s: String, max_bytes: usize) -> String {
    const MARK: &str = "…";
    if s.len() <= max_bytes {
        return s;
    }
    let mut end = max_bytes.saturating_sub(MARK.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut cut = s;
    cut.truncate(end);
    cut.push_str(MARK);
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_by_bytes_at_a_character_boundary() {
        assert_eq!(clip("short".into(), 10), "short");
        let russian = "не хватает денег на балансе ".repeat(100);
        let cut = clip(russian.clone(), 1024);
        assert!(cut.len() <= 1024 && cut.ends_with('…'), "{} bytes", cut.len());
        assert!(russian.starts_with(cut.trim_end_matches('…')));
        assert_eq!(clip("abcdef".into(), 4), "a…");
        assert_eq!(clip("abcdef".into(), 1), "…");
    }
}
