"""Request dependencies shared by the API routers: a database session per request, the user behind the bearer
token, and the role checks (one authorisation policy for every route)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from models.auth import user_for_token
from models.enums import Role
from models.tables import User

_bearer = HTTPBearer(auto_error=False, description="An rtqa API token (`rtqa tokens issue`).")


def get_session(request: Request) -> Iterator[Session]:
    """A database session for one request."""
    with Session(request.app.state.engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def current_user(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    """The user behind the bearer token; 401 when it is missing, unknown, revoked or expired."""
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing bearer token: send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    user = user_for_token(session, credentials.credentials)
    if user is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="invalid, revoked or expired token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return user


CurrentUser = Annotated[User, Depends(current_user)]


def staff_or_commissioner(user: CurrentUser) -> User:
    """The user, if they may see every provider (403 for centre tokens)."""
    if user.role is Role.CENTRE:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="centre tokens may only read their own provider")
    return user


StaffOrCommissioner = Annotated[User, Depends(staff_or_commissioner)]


def staff_only(user: CurrentUser) -> User:
    """The user, if QA staff (403 otherwise)."""
    if user.role is not Role.STAFF:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=f"only QA staff may do this, not {user.role.value} users")
    return user


StaffOnly = Annotated[User, Depends(staff_only)]
