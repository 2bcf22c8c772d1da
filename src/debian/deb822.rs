//! Reading deb822 control data (`Packages`, `Release`, apt `.sources`) without copying it.
//!
//! A file is a sequence of stanzas separated by blank lines; a stanza is `Field: value` lines,
//! where lines starting with white space continue the previous field. Values are returned as
//! slices of the input: a `Packages` file is tens of megabytes, and the index keeps only a few
//! fields of each stanza.

/// One stanza: its fields in order, values borrowed from the text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stanza<'a> {
    fields: Vec<(&'a str, &'a str)>,
}

impl<'a> Stanza<'a> {
    /// The value of `name` (field names are case-insensitive), first line and continuation
    /// lines as written, without the leading space of the first line.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.fields
            .iter()
            .find(|(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| *value)
    }

    /// Every field, in file order.
    pub fn fields(&self) -> &[(&'a str, &'a str)] {
        &self.fields
    }
}

/// Iterates over the stanzas of `text`. Comment lines (`#`) are skipped, as apt does in
/// `.sources` files; lines that are neither fields nor continuations are ignored.
pub fn stanzas(text: &str) -> Stanzas<'_> {
    Stanzas { rest: text }
}

/// Iterator returned by [`stanzas`].
pub struct Stanzas<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Stanzas<'a> {
    type Item = Stanza<'a>;

    fn next(&mut self) -> Option<Stanza<'a>> {
        let mut stanza = Stanza::default();
        // Where the current field's value starts and ends, as offsets into `self.rest`'s
        // original text, so continuation lines extend the same slice.
        let mut open: Option<(&'a str, usize, usize)> = None;
        let text = self.rest;
        let mut offset = 0;
        while offset < text.len() {
            let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
            let line = &text[offset..line_end];
            let next = (line_end + 1).min(text.len());
            if line.trim().is_empty() {
                if open.is_some() || !stanza.fields.is_empty() {
                    offset = next;
                    break;
                }
            } else if line.starts_with('#') {
                // A comment: neither ends nor continues a field.
            } else if line.starts_with([' ', '\t']) {
                if let Some((_, _, end)) = open.as_mut() {
                    *end = line_end;
                }
            } else if let Some(colon) = line.find(':') {
                if let Some((name, start, end)) = open.take() {
                    stanza
                        .fields
                        .push((name, text[start..end].trim_end_matches('\r')));
                }
                let value_start = offset + colon + 1;
                let skip = text[value_start..line_end].len()
                    - text[value_start..line_end].trim_start().len();
                open = Some((&line[..colon], value_start + skip, line_end));
            }
            offset = next;
        }
        if let Some((name, start, end)) = open.take() {
            stanza
                .fields
                .push((name, text[start..end].trim_end_matches('\r')));
        }
        self.rest = &text[offset.min(text.len())..];
        if stanza.fields.is_empty() {
            None
        } else {
            Some(stanza)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_continuations() {
        let text = "Package: a\nVersion: 1.0\nDescription: short\n long line\n .\n more\n\n\nPackage: b\nversion: 2\n";
        let all: Vec<Stanza<'_>> = stanzas(text).collect();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].get("package"), Some("a"));
        assert_eq!(
            all[0].get("Description"),
            Some("short\n long line\n .\n more")
        );
        assert_eq!(all[1].get("Version"), Some("2"));
        assert_eq!(all[1].get("Missing"), None);
    }

    #[test]
    fn multi_line_values_starting_empty() {
        let text = "Origin: Debian\nSHA256:\n abc 10 main/Packages\n def 20 main/Packages.xz\n";
        let stanza = stanzas(text).next().unwrap();
        let lines: Vec<&str> = stanza
            .get("SHA256")
            .unwrap()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(lines, ["abc 10 main/Packages", "def 20 main/Packages.xz"]);
    }

    #[test]
    fn comments_and_crlf_and_odd_lines() {
        let text = "# a comment\nTypes: deb\r\n# URIs: commented\nURIs: http://x\nnot a field\n";
        let stanza = stanzas(text).next().unwrap();
        assert_eq!(stanza.get("Types"), Some("deb"));
        assert_eq!(stanza.get("URIs"), Some("http://x"));
        assert_eq!(stanzas("").count(), 0);
        assert_eq!(stanzas("\n\n \n").count(), 0);
    }
}
