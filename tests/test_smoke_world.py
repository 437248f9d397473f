import twostep as ts

from .conftest import World


def test_r2_member_without_2fa_logs_in_after_password(world: World) -> None:  # R2
    session = world.login(world.member)
    assert world.service.check_session(session).user_id == world.member.id
    assert session.two_factor_enabled is False


def test_r1_user_with_2fa_needs_a_code(world: World) -> None:  # R1
    session = world.login(world.member)
    world.enroll(session)
    step = world.service.login(world.member.email, "correct horse battery")
    assert isinstance(step, ts.CodeRequired)
