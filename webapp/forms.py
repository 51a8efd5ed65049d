"""The portal's forms (flask-wtf: CSRF on every one). Rules beyond shape live in services."""

from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, StringField
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


class TokenForm(FlaskForm):
    name = StringField("Token name", validators=[DataRequired(), Length(max=80)])


class EmptyForm(FlaskForm):
    """For buttons that only POST (revoke, delete): the CSRF token is the whole form."""
