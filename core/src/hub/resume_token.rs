//! A session's resume token: the secret a client shows to resume it.

use std::fmt;

use crate::auth::constant_time_eq;

/// 128 random bits, shown to clients as 32 lowercase hex digits. Kept as the
/// number (16 bytes inside the session) rather than as its text, which was a
/// 48-byte allocation per session.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct ResumeToken(u128);

impl ResumeToken {
    pub(crate) fn random() -> ResumeToken {
        ResumeToken(rand::random())
    }

    /// The token `text` shows, if it is written as this server writes them
    /// (32 lowercase hex digits): any other text matches no session.
    pub(crate) fn parse(text: &str) -> Option<ResumeToken> {
        let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if text.len() != 32 || !text.bytes().all(hex) {
            return None;
        }
        u128::from_str_radix(text, 16).ok().map(ResumeToken)
    }

    /// Whether a client showed this token; in constant time, since it is a
    /// secret (only the text's shape, which is public, decides early).
    pub(crate) fn matches(&self, shown: &str) -> bool {
        ResumeToken::parse(shown)
            .is_some_and(|t| constant_time_eq(&t.0.to_be_bytes(), &self.0.to_be_bytes()))
    }
}

impl fmt::Display for ResumeToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// Never prints the secret.
impl fmt::Debug for ResumeToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResumeToken(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_reads_back_from_its_text_and_nothing_else_matches() {
        let token = ResumeToken(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        let text = token.to_string();
        assert_eq!(text, "0123456789abcdef0011223344556677");
        assert_eq!(ResumeToken::parse(&text), Some(token));
        assert!(token.matches(&text));
        assert!(!token.matches("0123456789abcdef0011223344556678"));
        assert!(
            !token.matches(&text.to_uppercase()),
            "not as the server writes it"
        );
        assert!(!token.matches(&text[1..]));
        assert!(!token.matches(&format!("+{}", &text[1..])));
        assert!(!token.matches(""));
        assert!(
            !format!("{token:?}").contains(&text),
            "Debug hides the secret"
        );
        let fresh = ResumeToken::random();
        assert!(fresh.matches(&fresh.to_string()));
        assert_ne!(fresh, ResumeToken::random());
    }
}
