"""The portal's forms (flask-wtf: CSRF on every one). Rules beyond shape live in services."""

from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, HiddenField, PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])


class SignupForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(min=10, max=1024,
                             message="Use a password of at least 10 characters.")])
    confirm = PasswordField("Repeat password", validators=[DataRequired(), EqualTo("password",
                            message="The two passwords differ.")])


class WalletForm(FlaskForm):
    wallet_address = StringField("Wallet address for payouts", validators=[Length(max=128)])


class TimeZoneForm(FlaskForm):
    # Choices are the IANA names (webapp/timezones.py); checked by accounts.set_time_zone, not here,
    # so a bad value gets the service's message.
    time_zone = StringField("Show times in", validators=[Length(max=64)])


class TokenForm(FlaskForm):
    name = StringField("Token name", validators=[DataRequired(), Length(max=80)])


class EmptyForm(FlaskForm):
    """For buttons that only POST (revoke, delete): the CSRF token is the whole form."""


class AlertsForm(FlaskForm):
    """The Account page's alert choices; the addresses are checked by services/alerts.py."""
    on_offline = BooleanField("A worker goes offline")
    on_error = BooleanField("A worker reports an error")
    on_suspended = BooleanField("A worker is suspended (a failed spot check)")
    daily_digest = BooleanField("A daily digest of the fleet")
    email_enabled = BooleanField("By e-mail")
    email_to = StringField("E-mail to (empty: your account's address)", validators=[Length(max=254)])
    webhook_url = StringField("Webhook URL (JSON POST, signed)", validators=[Length(max=500)])


# --- Jobs (added by the jobs pages; ranges and file checks live in services/jobs.py) ---------------
from flask_wtf.file import FileField, MultipleFileField  # noqa: E402
from wtforms import BooleanField, IntegerField, SelectField  # noqa: E402
from wtforms.validators import InputRequired, Optional  # noqa: E402

from .services.jobs import ENGINES, MODELS  # noqa: E402

_WHOLE = "Enter a whole number."


def _choices(pairs) -> list:
    """(value, label) pairs in the form WTForms 3.3+ wants (SelectChoice), tuples before it."""
    try:
        from wtforms.fields.choices import SelectChoice
    except ImportError:
        return list(pairs)
    return [SelectChoice(value, label) for value, label in pairs]


_FROM_FILE = ("", "From the file")
_FILE_VALUE = {"placeholder": "from the file"}


class RenderJobForm(FlaskForm):
    # Settings left empty take the scene file's own values (services/scenes.py reads them), the name its name.
    name = StringField("Job name", validators=[Optional(), Length(max=120)],
                       render_kw={"placeholder": "the file's name"})
    blend = FileField("Scene: a .blend, or a .zip of the project")
    main = StringField("The .blend to render, in the zip", validators=[Optional(), Length(max=255)])
    draft = HiddenField(validators=[Optional(), Length(max=20)])  # the scene uploaded already (SceneDraft)
    allow_missing = BooleanField("Render anyway without the missing files")
    frame_start = IntegerField("First frame", validators=[Optional()], render_kw=_FILE_VALUE)
    frame_end = IntegerField("Last frame", validators=[Optional()], render_kw=_FILE_VALUE)
    frame_step = IntegerField("Step", validators=[Optional()], render_kw=_FILE_VALUE)
    chunk = IntegerField("Frames per task", default=1, validators=[InputRequired(_WHOLE)])
    engine = SelectField("Engine", choices=_choices([_FROM_FILE, *ENGINES.items()]), default="")
    samples = IntegerField("Samples", validators=[Optional()], render_kw=_FILE_VALUE)
    resolution_percent = IntegerField("Resolution %", validators=[Optional()], render_kw=_FILE_VALUE)
    format = SelectField("Output format", choices=_choices([_FROM_FILE, ("PNG", "PNG"), ("JPEG", "JPEG"),
                                                            ("OPEN_EXR", "OpenEXR")]), default="")
    device = SelectField("Device", choices=_choices([("any", "Any (CPU or GPU)"), ("gpu", "GPU only")]), default="any")
    priority = IntegerField("Priority", default=0, validators=[InputRequired(_WHOLE)])
    max_price = StringField("Max price (USD/bench-hour)", validators=[Optional(), Length(max=20)])
    budget = StringField("Budget (USD)", validators=[Optional(), Length(max=32)])


class UpscaleJobForm(FlaskForm):
    name = StringField("Job name", validators=[DataRequired(), Length(max=120)])
    images = MultipleFileField("Images (PNG, JPEG, WebP)")
    archive = FileField("…or one zip of images")
    scale = SelectField("Scale", choices=_choices([(4, "4×"), (2, "2×")]), coerce=int, default=4)
    model = SelectField("Model", choices=_choices(MODELS.items()), default="realesr-animevideov3")
    priority = IntegerField("Priority", default=0, validators=[InputRequired(_WHOLE)])
    max_price = StringField("Max price (USD/bench-hour)", validators=[Optional(), Length(max=20)])
    budget = StringField("Budget (USD)", validators=[Optional(), Length(max=32)])


class PayoutForm(FlaskForm):
    # Empty: the whole balance. The hidden key makes a double-submitted form one request (services/payouts.py).
    amount = StringField("Amount (USD)", validators=[Length(max=32)])
    idempotency_key = HiddenField(validators=[Length(max=64)])


class BudgetForm(FlaskForm):
    budget = StringField("New budget (USD)", validators=[DataRequired(), Length(max=32)])


class MaxPriceForm(FlaskForm):
    """The job page's raise of a waiting job's maximum price (services/job_price.py checks the amount)."""
    max_price = StringField("New maximum (USD/bench-hour)", validators=[DataRequired(), Length(max=32)])
