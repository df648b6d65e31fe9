"""Console pages without an org: sign in/up/out, first-run setup, account, new organization."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import Response

from raptorflow.accounts.schemas import OrganizationCreate, PasswordChange
from raptorflow.accounts.service import OrganizationService
from raptorflow.accounts.users import UserService
from raptorflow.auth.deps import auth_service
from raptorflow.auth.schemas import RegisterIn
from raptorflow.config import Registration
from raptorflow.console import setup
from raptorflow.console.forms import FormData, build_pair, read_form
from raptorflow.console.web import (
    SESSION_COOKIE,
    ConsoleRoute,
    PublicPage,
    UserPage,
    Viewer,
    audit_context,
    clear_session_cookie,
    field_errors,
    form_text,
    redirect,
    render,
    set_session_cookie,
)
from raptorflow.kit.deps import SessionDep
from raptorflow.kit.errors import Forbidden, NotFound, RaptorFlowError

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
MaybeViewer = Annotated[Viewer | None, PublicPage]
SignedIn = Annotated[Viewer, UserPage]


def _safe_next(target: str) -> str:
    """Only same-site paths: an open redirect after sign-in would help phishing."""
    parts = urlsplit(target)
    if (
        not target.startswith("/")
        or target.startswith("//")
        or parts.scheme
        or parts.netloc
        or "\\" in target
    ):
        return "/"
    return target


@router.get("/")
async def home(viewer: MaybeViewer, session: SessionDep) -> Response:
    """The first org's dashboard; the sign-in page when signed out; org creation without an org."""
    if viewer is None:
        return redirect("/login")
    orgs = await UserService(session, viewer.principal).organizations()
    if not orgs:
        return redirect("/account")
    return redirect(f"/o/{orgs[0][0].id}/")


@router.get("/login")
async def login_form(request: Request, viewer: MaybeViewer, next: str = "/") -> Response:
    """The sign-in form."""
    if viewer is not None:
        return redirect(_safe_next(next))
    return render(request, "login.html", {"next": _safe_next(next), "errors": {}, "email": ""})


@router.post("/login")
async def login(request: Request, viewer: MaybeViewer, session: SessionDep) -> Response:
    """Check the password (throttled like the API), open a session, set the cookie."""
    await request.app.state.token_issuer.ensure_key()  # sessions issue an access token too
    form = await request.form()
    email, password = form_text(form, "email"), str(form.get("password") or "")
    target = _safe_next(form_text(form, "next") or "/")
    try:
        result = await auth_service(request, session).sign_in(email, password, audit_context(request))
    except RaptorFlowError as exc:
        if exc.keep_changes:  # the failed attempt's audit entry stays
            await session.commit()
        else:
            await session.rollback()
        response = render(
            request,
            "login.html",
            {"next": target, "errors": {"form": exc.detail}, "email": email},
            status=exc.status,
        )
        for name, value in exc.headers.items():
            response.headers[name] = value
        return response
    done = redirect(target)
    set_session_cookie(request, done, result.tokens.refresh_token)
    return done


@router.post("/logout")
async def logout(request: Request, viewer: SignedIn, session: SessionDep) -> Response:
    """End the session (same as the API's logout) and drop the cookie."""
    await auth_service(request, session).logout(
        request.cookies.get(SESSION_COOKIE, ""), audit_context(request, viewer.user_id)
    )
    response = redirect("/login")
    clear_session_cookie(request, response)
    return response


@router.get("/signup")
async def signup_form(request: Request, viewer: MaybeViewer) -> Response:
    """The registration form (when registration is not closed)."""
    if request.app.state.settings.registration == Registration.closed:
        raise Forbidden("Registration is closed on this server; ask an administrator for an account.")
    return render(request, "signup.html", {"errors": {}, "values": {}})


ACCOUNT_FIELDS = ("name", "email", "password")
ORG_FIELDS = ("name", "slug")


def _account_form(form: Any) -> FormData:
    # Passwords are taken exactly as typed (spaces count) and never shown back.
    return read_form(form, RegisterIn, ACCOUNT_FIELDS, text={"password"})


def _shown(*parts: FormData) -> dict[str, Any]:
    return {k: v for data in parts for k, v in data.shown.items() if "password" not in k}


@router.post("/signup")
async def signup(request: Request, viewer: MaybeViewer, session: SessionDep) -> Response:
    """Register (the service applies the registration mode and password policy) and sign in."""
    await request.app.state.token_issuer.ensure_key()  # sessions issue an access token too
    data = _account_form(await request.form())
    auth = auth_service(request, session)
    try:
        body = data.build(RegisterIn)
        user = await auth.register(str(body.email), body.password, body.name, audit_context(request))
        result = await auth.open_session(user, audit_context(request, user.id))
    except RaptorFlowError as exc:
        await session.rollback()
        return render(
            request, "signup.html", {"errors": field_errors(exc), "values": _shown(data)}, status=exc.status
        )
    response = redirect("/")
    set_session_cookie(request, response, result.tokens.refresh_token)
    return response


@router.get("/setup")
async def setup_form(request: Request, viewer: MaybeViewer, session: SessionDep, token: str = "") -> Response:
    """First run: the page behind the one-time link `raptorflow serve` prints while no user exists."""
    if await setup.valid_setup_token(session, token) is None:
        return render(
            request,
            "error.html",
            {
                "status": 404,
                "title": "Setup link not valid",
                "detail": "This setup link was used, has expired, or an account already exists; sign in.",
            },
            status=404,
        )
    return render(request, "setup.html", {"token": token, "errors": {}, "values": {}})


@router.post("/setup")
async def setup_submit(request: Request, viewer: MaybeViewer, session: SessionDep) -> Response:
    """Create the first owner and organization, use up the token, sign in."""
    await request.app.state.token_issuer.ensure_key()  # sessions issue an access token too
    form = await request.form()
    token = form_text(form, "token")
    account = _account_form(form)
    org = read_form(form, OrganizationCreate, ORG_FIELDS, prefix="org_")
    try:
        user, org_body = build_pair(account, RegisterIn, org, OrganizationCreate)
        done = await setup.complete_setup(
            auth_service(request, session),
            token,
            email=str(user.email),
            password=user.password,
            name=user.name,
            org=org_body,
            ctx=audit_context(request),
        )
    except RaptorFlowError as exc:
        await session.rollback()
        errors = field_errors(exc)
        if "slug" in errors:  # the organization service names its own field
            errors["org_slug"] = errors.pop("slug")
        return render(
            request,
            "setup.html",
            {"token": token, "errors": errors, "values": _shown(account, org)},
            status=exc.status,
        )
    response = redirect(f"/o/{done.org.id}/")
    set_session_cookie(request, response, done.signed_in.tokens.refresh_token)
    return response


@router.get("/account")
async def account(request: Request, viewer: SignedIn) -> Response:
    """Profile, password change, new organization."""
    return render(request, "account.html", {"errors": {}, "values": {}, "message": None}, viewer=viewer)


@router.post("/account/password")
async def change_password(request: Request, viewer: SignedIn, session: SessionDep) -> Response:
    """Change the password; every other session ends (UserService rule)."""
    fields = ("current_password", "new_password")
    data = read_form(await request.form(), PasswordChange, fields, text=fields)
    try:
        body = data.build(PasswordChange)
        await UserService(session, viewer.principal).change_password(body.current_password, body.new_password)
    except RaptorFlowError as exc:
        await session.rollback()
        return render(
            request,
            "account.html",
            {"errors": field_errors(exc), "values": {}, "message": None},
            status=exc.status,
            viewer=viewer,
        )
    return render(
        request,
        "account.html",
        {"errors": {}, "values": {}, "message": "Password changed; your other sessions were signed out."},
        viewer=viewer,
    )


@router.post("/account/organizations")
async def create_org(request: Request, viewer: SignedIn, session: SessionDep) -> Response:
    """Create an organization (you become its owner)."""
    data = read_form(await request.form(), OrganizationCreate, ORG_FIELDS, prefix="org_")
    try:
        org = await OrganizationService(session).create(viewer.principal, data.build(OrganizationCreate))
    except RaptorFlowError as exc:
        await session.rollback()
        errors = field_errors(exc)
        if "slug" in errors:
            errors["org_slug"] = errors.pop("slug")
        return render(
            request,
            "account.html",
            {"errors": errors, "values": data.shown, "message": None},
            status=exc.status,
            viewer=viewer,
        )
    return redirect(f"/o/{org.id}/")


@router.get("/switch")
async def switch_org(viewer: SignedIn, to: str = "") -> Response:
    """The org switcher: go to another org of yours (anything else is a 404, like a random id)."""
    for org, _role in viewer.orgs:
        if str(org.id) == to:
            return redirect(f"/o/{org.id}/")
    raise NotFound()
