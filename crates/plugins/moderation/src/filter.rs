//! The word list: words (or phrases) a message may not contain, found whole and in any
//! case.
//!
//! The list compiles into one regular expression (the `regex` crate: linear time in the
//! message, whatever the list), `(?i)\b{start-half}(?:…)\b{end-half}`: an alternative
//! matches only where no word character (Unicode's letters, marks, digits and connector
//! punctuation) touches it on either side, so `ass` is found in `Ass!` but not in `class`,
//! and `c++` is found in `c++ rocks`. Case is folded the Unicode way (`ÉCOLE` is `école`,
//! `ДУРАК` is `дурак`). Longer alternatives come first, so a phrase wins over a word it
//! starts with, and the spaces inside a phrase match any run of white space. Text is
//! compared as given, without Unicode normalization: a decomposed `é` is not a composed
//! one. Scripts written without spaces (Chinese, Japanese) have no word edges to find.

use regex::{Regex, RegexBuilder};

/// Words to find in messages, and the character that masks them.
#[derive(Debug, Clone)]
pub struct WordFilter {
    regex: Regex,
    mask: char,
}

impl WordFilter {
    /// A filter for `words`, masking with `mask`; `None` when there are no words.
    ///
    /// # Errors
    ///
    /// When the list cannot be compiled: too large for the regular expression's size
    /// limit. Blank words are left out here; the config's checks refuse them.
    pub fn new(words: &[String], mask: char) -> Result<Option<Self>, regex::Error> {
        let mut alternatives: Vec<String> = words
            .iter()
            .filter(|word| !word.trim().is_empty())
            .map(|word| word.split_whitespace().map(regex::escape).collect::<Vec<_>>().join(r"\s+"))
            .collect();
        if alternatives.is_empty() {
            return Ok(None);
        }
        alternatives.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        alternatives.dedup();
        let pattern = format!(r"\b{{start-half}}(?:{})\b{{end-half}}", alternatives.join("|"));
        let regex =
            RegexBuilder::new(&pattern).case_insensitive(true).size_limit(64 << 20).build()?;
        Ok(Some(Self { regex, mask }))
    }

    /// The listed words `text` contains, as written there, each once.
    pub fn find<'t>(&self, text: &'t str) -> Vec<&'t str> {
        let mut found: Vec<&str> = Vec::new();
        for matched in self.regex.find_iter(text) {
            if !found.contains(&matched.as_str()) {
                found.push(matched.as_str());
            }
        }
        found
    }

    /// `text` with every character of each listed word it contains replaced by the mask
    /// (the white space inside a phrase stays), so it keeps its length in characters.
    pub fn mask(&self, text: &str) -> String {
        self.regex
            .replace_all(text, |found: &regex::Captures<'_>| {
                found[0]
                    .chars()
                    .map(|c| if c.is_whitespace() { c } else { self.mask })
                    .collect::<String>()
            })
            .into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(words: &[&str]) -> WordFilter {
        let words: Vec<String> = words.iter().map(|word| (*word).to_owned()).collect();
        WordFilter::new(&words, '*').unwrap().unwrap()
    }

    /// Masks `text` with a filter of `words` and checks the result and what was found.
    fn check(words: &[&str], text: &str, masked: &str, found: &[&str]) {
        let filter = filter(words);
        assert_eq!(filter.mask(text), masked, "{words:?} in {text:?}");
        assert_eq!(filter.find(text), found, "{words:?} in {text:?}");
    }

    #[test]
    fn whole_words_in_any_case() {
        check(&["ass"], "Ass! you ASS, class", "***! you ***, class", &["Ass", "ASS"]);
        check(&["ass"], "passing assassin ass_hat ass2", "passing assassin ass_hat ass2", &[]);
        check(&["darn"], "darn darn", "**** ****", &["darn"]);
        check(&["c++"], "c++ rocks, c++x not", "*** rocks, c++x not", &["c++"]);
        check(&["a.b"], "axb a.b", "axb ***", &["a.b"]);
    }

    #[test]
    fn unicode_letters_and_case() {
        check(&["дурак"], "Ты ДУРАК.", "Ты *****.", &["ДУРАК"]);
        check(&["école"], "L'ÉCOLE, écoles", "L'*****, écoles", &["ÉCOLE"]);
        // A letter with a diacritic is a word character: no edge inside `naïvely`.
        check(&["naïve"], "naïvely naïve", "naïvely *****", &["naïve"]);
        check(&["straße"], "STRASSE Straße", "STRASSE ******", &["Straße"]);
    }

    #[test]
    fn phrases_match_across_any_white_space_and_win_over_their_first_word() {
        check(&["bad", "bad  word"], "a bad\tword, bad", "a ***\t****, ***", &["bad\tword", "bad"]);
    }

    #[test]
    fn no_words_no_filter() {
        assert!(WordFilter::new(&[], '*').unwrap().is_none());
        assert!(WordFilter::new(&[" ".to_owned()], '*').unwrap().is_none());
    }

    #[test]
    fn the_mask_keeps_the_length_in_characters() {
        let filter = WordFilter::new(&["ünïcödé".to_owned()], '#').unwrap().unwrap();
        assert_eq!(filter.mask("x ünïcödé y"), "x ####### y");
    }
}
