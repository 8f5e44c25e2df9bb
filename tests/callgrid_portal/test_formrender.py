"""The portal's form renderer: project templates override Django's widget templates, and the
inline select writes the same markup as Django's own."""

import re
from pathlib import Path

from django import forms
from django.forms.renderers import DjangoTemplates

from callgrid_portal.formrender import PortalFormRenderer

ROOT = Path(__file__).resolve().parents[2]


class _Disabled(forms.Select):
    """A select whose options carry attributes of their own (as a subclass may give them)."""

    def create_option(self, *args, **kwargs):
        option = super().create_option(*args, **kwargs)
        if option["value"] == "b":
            option["attrs"]["disabled"] = True
            option["attrs"]["data-note"] = 'say "no" & <stop>'
        return option


def _squeezed(html: str) -> str:
    return re.sub(r">\s+<", "><", html.strip())


def _both(widget: forms.Widget, value: object) -> tuple[str, str]:
    ours = widget.render("pick", value, attrs={"id": "id_pick"}, renderer=PortalFormRenderer())
    django = widget.render("pick", value, attrs={"id": "id_pick"}, renderer=DjangoTemplates())
    return _squeezed(ours), _squeezed(django)


def test_a_select_is_written_as_django_writes_it():
    choices = [
        ("", "Every buyer"),
        ("a", "Acme <Leads>"),
        ("b", "Bolt & Co"),
        ("Grouped", [("c", "Cedar"), ("d", "Dune")]),
    ]
    cases = [
        (forms.Select(choices=choices), "c"),
        (_Disabled(choices=choices), "b"),
        (forms.SelectMultiple(choices=choices), ["a", "d"]),
        (forms.NullBooleanSelect(), True),
    ]
    for widget, value in cases:
        ours, django = _both(widget, value)
        assert ours == django
    ours, _ = _both(cases[1][0], "b")
    assert '<option value="a">Acme &lt;Leads&gt;</option>' in ours
    assert 'value="b" selected disabled data-note="say &quot;no&quot; &amp; &lt;stop&gt;"' in ours


def test_the_renderer_reads_the_project_s_select_template():
    template = PortalFormRenderer().get_template("django/forms/widgets/select.html")
    assert Path(template.origin.name) == ROOT / "templates/django/forms/widgets/select.html"
    # Every other widget template is still Django's own.
    other = PortalFormRenderer().get_template("django/forms/widgets/input.html")
    assert "django/forms/templates" in other.origin.name
