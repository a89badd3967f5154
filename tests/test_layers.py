"""The package's layers: no import circle, no import from a higher layer."""

from diffad._layers import LAYERS, cycles, import_graph, subpackage, upward_imports


def test_every_subpackage_has_a_layer():
    assert {subpackage(m) for m in import_graph()} <= set(LAYERS)


def test_no_import_circle():
    assert cycles(import_graph()) == []


def test_no_import_from_a_higher_layer():
    assert upward_imports(import_graph()) == []


def test_the_region_test_builds_on_the_localisers_not_the_reverse():
    graph = import_graph()
    image_imports = {t for m, ts in graph.items() if subpackage(m) == "image" for t in ts}
    assert not {t for t in image_imports if subpackage(t) == "selective"}
    selective_imports = {t for m, ts in graph.items() if subpackage(m) == "selective" for t in ts}
    assert "diffad.image.region_maps" in selective_imports


def test_the_checks_see_a_circle_and_an_upward_import():
    graph = {"diffad.image.a": {"diffad.selective.b"}, "diffad.selective.b": {"diffad.image.a"}}
    assert cycles(graph) == [["diffad.image.a", "diffad.selective.b"]]
    assert upward_imports(graph) == [("diffad.image.a", "diffad.selective.b")]
