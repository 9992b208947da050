//! A located YAML tree: every node keeps the line and column where it starts, so validation
//! errors found after parsing still point at the right place. Built from `yaml-rust2`'s marked
//! event parser; scalars are resolved the way cloud-init's PyYAML (YAML 1.1) does for the types
//! we need: `yes/no/on/off/true/false` in any case are booleans, `~`/`null`/empty are null.

use crate::diag::Location;
use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Alias expansion is capped so that a "billion laughs" document is rejected, not expanded.
const MAX_NODES: usize = 200_000;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub kind: Kind,
    pub loc: Location,
    /// Which cloud-config part (of a MIME multipart) this node came from; 0 for plain input.
    pub part: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    Scalar {
        text: String,
        plain: bool,
        tag: Option<String>,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar { text, plain: true, tag: None }
            if text.is_empty() || text == "~" || text.eq_ignore_ascii_case("null"))
            || matches!(&self.kind, Kind::Scalar { tag: Some(t), .. } if t == "null")
    }

    /// YAML 1.1 booleans (PyYAML): yes/no/on/off/true/false, any case, unquoted.
    pub fn as_bool(&self) -> Option<bool> {
        let Kind::Scalar { text, plain, tag } = &self.kind else {
            return None;
        };
        let resolvable = match tag {
            None => *plain,
            Some(t) => t == "bool",
        };
        if !resolvable {
            return None;
        }
        match text.to_ascii_lowercase().as_str() {
            "yes" | "true" | "on" => Some(true),
            "no" | "false" | "off" => Some(false),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match &self.kind {
            Kind::Scalar {
                text,
                plain: true,
                tag: None,
            } => {
                let t = text.replace('_', "");
                t.strip_prefix('+').unwrap_or(&t).parse().ok()
            }
            _ => None,
        }
    }

    /// The text of a scalar (any scalar: numbers and booleans keep their source spelling,
    /// so `version: 1.10` stays `1.10`). `None` for null, sequences and mappings.
    pub fn as_text(&self) -> Option<&str> {
        if self.is_null() {
            return None;
        }
        match &self.kind {
            Kind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
            Kind::Scalar { .. } if self.is_null() => "null (empty)",
            Kind::Scalar { .. } if self.as_bool().is_some() => "a boolean",
            Kind::Scalar { .. } if self.as_int().is_some() => "a number",
            Kind::Scalar { .. } => "a string",
        }
    }

    pub fn size(&self) -> usize {
        match &self.kind {
            Kind::Scalar { .. } => 1,
            Kind::Seq(v) => 1 + v.iter().map(Node::size).sum::<usize>(),
            Kind::Map(v) => 1 + v.iter().map(|(k, v)| k.size() + v.size()).sum::<usize>(),
        }
    }
}

/// A YAML syntax error with its place.
#[derive(Debug, Clone)]
pub(crate) struct SyntaxError {
    pub loc: Location,
    pub message: String,
}

fn loc(m: &Marker) -> Location {
    // yaml-rust2 lines are 1-based, columns 0-based.
    Location {
        line: m.line(),
        column: m.col() + 1,
    }
}

enum Frame {
    Seq(Node, usize),
    Map(Node, usize, Option<Node>),
}

struct Builder {
    part: usize,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    docs: Vec<Node>,
    nodes: usize,
    error: Option<SyntaxError>,
}

impl Builder {
    fn finish(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Frame::Seq(n, _)) => {
                if let Kind::Seq(v) = &mut n.kind {
                    v.push(node);
                }
            }
            Some(Frame::Map(n, _, key)) => match key.take() {
                None => *key = Some(node),
                Some(k) => {
                    let mut node = node;
                    // An empty value (`server:`) has no place of its own (the parser marks the
                    // next token); point at its key instead.
                    if matches!(&node.kind, Kind::Scalar { text, plain: true, tag: None } if text.is_empty())
                    {
                        node.loc = k.loc;
                    }
                    if let Kind::Map(v) = &mut n.kind {
                        v.push((k, node));
                    }
                }
            },
        }
    }
}

fn tag_name(tag: &Option<yaml_rust2::parser::Tag>) -> Option<String> {
    tag.as_ref()
        .map(|t| t.suffix.trim_start_matches("tag:yaml.org,2002:").to_owned())
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        self.nodes += 1;
        let here = loc(&mark);
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let plain = style == TScalarStyle::Plain;
                let node = Node {
                    kind: Kind::Scalar {
                        text,
                        plain,
                        tag: tag_name(&tag),
                    },
                    loc: here,
                    part: self.part,
                };
                self.finish(node, anchor);
            }
            Event::SequenceStart(anchor, _) => {
                self.stack.push(Frame::Seq(
                    Node {
                        kind: Kind::Seq(Vec::new()),
                        loc: here,
                        part: self.part,
                    },
                    anchor,
                ));
            }
            Event::MappingStart(anchor, _) => {
                self.stack.push(Frame::Map(
                    Node {
                        kind: Kind::Map(Vec::new()),
                        loc: here,
                        part: self.part,
                    },
                    anchor,
                    None,
                ));
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq(n, a)) = self.stack.pop() {
                    self.finish(n, a);
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map(mut n, a, _)) = self.stack.pop() {
                    if let Kind::Map(pairs) = &mut n.kind {
                        apply_merge_keys(pairs);
                        // A block mapping is marked at its first `:`; its first key is clearer.
                        if let Some((k, _)) = pairs.first()
                            && k.loc.line == n.loc.line
                            && k.loc.column < n.loc.column
                        {
                            n.loc = k.loc;
                        }
                    }
                    self.finish(n, a);
                }
            }
            Event::Alias(id) => match self.anchors.get(&id) {
                Some(n) => {
                    let n = n.clone();
                    self.nodes += n.size();
                    if self.nodes > MAX_NODES {
                        self.error = Some(SyntaxError {
                            loc: here,
                            message: format!(
                                "the document expands to more than {MAX_NODES} nodes through aliases"
                            ),
                        });
                        return;
                    }
                    self.finish(n, 0);
                }
                None => {
                    self.error = Some(SyntaxError {
                        loc: here,
                        message: "alias to an unknown anchor".into(),
                    })
                }
            },
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
        if self.nodes > MAX_NODES && self.error.is_none() {
            self.error = Some(SyntaxError {
                loc: here,
                message: format!("the document has more than {MAX_NODES} nodes"),
            });
        }
    }
}

/// `<<: *anchor` (YAML 1.1 merge keys, which PyYAML supports): keys of the merged mapping(s)
/// are added unless the mapping already has them.
fn apply_merge_keys(pairs: &mut Vec<(Node, Node)>) {
    let is_merge =
        |k: &Node| matches!(&k.kind, Kind::Scalar { text, plain: true, .. } if text == "<<");
    if !pairs.iter().any(|(k, _)| is_merge(k)) {
        return;
    }
    let (merges, mut rest): (Vec<_>, Vec<_>) = std::mem::take(pairs)
        .into_iter()
        .partition(|(k, _)| is_merge(k));
    for (_, v) in merges {
        let sources: Vec<Node> = match v.kind {
            Kind::Map(_) => vec![v],
            Kind::Seq(items) => items,
            _ => Vec::new(),
        };
        for src in sources {
            if let Kind::Map(src_pairs) = src.kind {
                for (k, v) in src_pairs {
                    if !rest.iter().any(|(rk, _)| rk.as_text() == k.as_text()) {
                        rest.push((k, v));
                    }
                }
            }
        }
    }
    *pairs = rest;
}

/// Parse one YAML document. An empty document is `None`.
pub(crate) fn parse(text: &str, part: usize) -> Result<Option<Node>, SyntaxError> {
    let mut b = Builder {
        part,
        stack: Vec::new(),
        anchors: HashMap::new(),
        docs: Vec::new(),
        nodes: 0,
        error: None,
    };
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut b, true) {
        let m = e.marker();
        return Err(SyntaxError {
            loc: loc(m),
            message: e.info().to_owned(),
        });
    }
    if let Some(e) = b.error {
        return Err(e);
    }
    if b.docs.len() > 1 {
        return Err(SyntaxError {
            loc: b.docs[1].loc,
            message: "more than one YAML document (`---`) in one cloud-config".into(),
        });
    }
    Ok(b.docs.pop())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_one_based() {
        let n = parse("a: 1\nbb:\n  - x\n", 0).unwrap().unwrap();
        let Kind::Map(pairs) = &n.kind else { panic!() };
        assert_eq!(pairs[1].0.loc, Location { line: 2, column: 1 });
        let Kind::Seq(items) = &pairs[1].1.kind else {
            panic!()
        };
        assert_eq!(items[0].loc, Location { line: 3, column: 5 });
    }

    #[test]
    fn yaml11_booleans() {
        for (t, b) in [
            ("yes", true),
            ("No", false),
            ("ON", true),
            ("off", false),
            ("True", true),
        ] {
            let n = parse(t, 0).unwrap().unwrap();
            assert_eq!(n.as_bool(), Some(b), "{t}");
        }
        assert_eq!(parse("'yes'", 0).unwrap().unwrap().as_bool(), None);
    }

    #[test]
    fn aliases_and_merge_keys() {
        let n = parse("base: &b {x: 1}\nc:\n  <<: *b\n  y: 2\n", 0)
            .unwrap()
            .unwrap();
        let Kind::Map(pairs) = &n.kind else { panic!() };
        let Kind::Map(c) = &pairs[1].1.kind else {
            panic!()
        };
        let keys: Vec<_> = c.iter().map(|(k, _)| k.as_text().unwrap()).collect();
        assert_eq!(keys, ["y", "x"]);
    }

    #[test]
    fn billion_laughs_is_capped() {
        let mut doc = String::from("a: &a [x,x,x,x,x,x,x,x,x,x]\n");
        let mut prev = 'a';
        for c in 'b'..='k' {
            doc.push_str(&format!("{c}: &{c} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"));
            prev = c;
        }
        let e = parse(&doc, 0).unwrap_err();
        assert!(e.message.contains("more than"), "{}", e.message);
    }
}
