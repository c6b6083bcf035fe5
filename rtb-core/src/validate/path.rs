//! Renders the path of a tape node (`imp[0].banner.format[1].w`) by descending from the root
//! to it: at each container, the member whose tape span holds the node. Runs only when a
//! validation fails, so a valid request pays nothing for paths.

use simd_json::Node;

use crate::error::{FieldPath, PathBuilder};
use crate::json::{array_items, object_entries, span};

/// The path of the node at `target`, then `leaf` (the name of a missing field) when not empty.
pub(crate) fn render(nodes: &[Node<'_>], target: usize, leaf: &str) -> FieldPath {
    let mut out = PathBuilder::new();
    let mut current = 0;
    while current != target {
        match step(nodes, current, target, &mut out) {
            Some(next) => current = next,
            None => break,
        }
    }
    if !leaf.is_empty() {
        out.key(leaf);
    }
    out.finish()
}

/// One level down towards `target`: appends the key or index taken, returns the child.
fn step(nodes: &[Node<'_>], current: usize, target: usize, out: &mut PathBuilder) -> Option<usize> {
    let holds = |start: usize| start <= target && target < start + span(nodes, start);
    match nodes.get(current)? {
        Node::Object { .. } => {
            let (key, value) = object_entries(nodes, current).find(|&(_, v)| holds(v))?;
            out.key(key);
            Some(value)
        }
        Node::Array { .. } => {
            let (i, item) = array_items(nodes, current)
                .enumerate()
                .find(|&(_, item)| holds(item))?;
            out.index(i);
            Some(item)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::{Decoder, Document};

    #[test]
    fn paths_of_nodes_at_any_depth() {
        let mut decoder = Decoder::new();
        let mut doc = Document::default();
        let raw = br#"{"id":"a","imp":[{"id":"1"},{"banner":{"format":[{"w":1},{"w":2,"h":3}]}}]}"#;
        let parsed = doc.parse(raw, &mut decoder, false).unwrap();
        let nodes = parsed.tape.nodes();
        let at = |want: i64| {
            nodes
                .iter()
                .position(|n| crate::json::as_i64(std::slice::from_ref(n), 0) == Some(want))
                .unwrap()
        };
        assert_eq!(
            render(nodes, at(2), "").to_string(),
            "imp[1].banner.format[1].w"
        );
        assert_eq!(
            render(nodes, at(3), "").to_string(),
            "imp[1].banner.format[1].h"
        );
        assert_eq!(render(nodes, 0, "").to_string(), "");
        assert_eq!(render(nodes, 0, "tmax").to_string(), "tmax");
        let imps = object_entries(nodes, 0)
            .find(|&(k, _)| k == "imp")
            .unwrap()
            .1;
        let second_imp = array_items(nodes, imps).nth(1).unwrap();
        assert_eq!(render(nodes, second_imp, "id").to_string(), "imp[1].id");
    }
}
