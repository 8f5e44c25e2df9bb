// Buttons that stop calls ask first. A button with data-confirm shows its question in a
// dialog; on OK the form is sent with confirm=yes, on Cancel nothing is sent. Without
// JavaScript the server answers with a page that asks the same question.
(function () {
  document.addEventListener("submit", function (event) {
    var button = event.submitter;
    if (!button || !button.dataset.confirm) { return; }
    var form = event.target;
    var question = button.dataset.confirm;
    var ticked = form.querySelectorAll('input[name="buyers"]:checked').length;
    if (button.dataset.confirmCount !== undefined) {
      if (!ticked) { return; }  // the server says to tick a buyer first
      question = question.replace("{count}", ticked === 1 ? "1 buyer" : ticked + " buyers");
    }
    if (!window.confirm(question)) { event.preventDefault(); return; }
    var field = form.querySelector('input[name="confirm"]');
    if (!field) {
      field = document.createElement("input");
      field.type = "hidden";
      field.name = "confirm";
      form.appendChild(field);
    }
    field.value = "yes";
  });
})();
