"""The portal's form renderer writes every select in Python, with the same markup as Django's
templates, and leaves every other widget to Django's own."""

import re

from django import forms
from django.forms.renderers import DjangoTemplates

from buyers.models import Buyer
from callgrid_portal.formrender import PortalFormRenderer
from tests.factories import BuyerFactory


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


def test_every_other_widget_is_django_s_own_template():
    for widget, value in (
        (forms.TextInput(attrs={"placeholder": 'a "b" & <c>'}), "x<y"),
        (forms.CheckboxInput(), True),
        (forms.RadioSelect(choices=[("a", "A"), ("b", "B")]), "b"),
        (forms.DateInput(), "2026-12-05"),
    ):
        ours = widget.render("pick", value, renderer=PortalFormRenderer())
        assert ours == widget.render("pick", value, renderer=DjangoTemplates())


def test_a_select_of_200_buyers_is_one_string_with_every_option(db):
    for number in range(200):
        BuyerFactory(name=f"Buyer <{number:03d}> & Co", priority=number)
    field = forms.ModelChoiceField(queryset=Buyer.objects.order_by("priority"))
    chosen = Buyer.objects.get(name="Buyer <150> & Co")

    ours, django = _both(field.widget, chosen.pk)

    assert ours == django
    assert ours.count("<option ") == 201
    assert f'<option value="{chosen.pk}" selected>Buyer &lt;150&gt; &amp; Co' in ours
