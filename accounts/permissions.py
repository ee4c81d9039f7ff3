from rest_framework import permissions

from accounts.selectors import ADMIN, account_role


class AccountRolePermission(permissions.BasePermission):
    """The API's one access rule, with the selectors' scoping (accounts/selectors.py).

    Signed-in users only. A view shows only what the user's accounts hold (anything else is a 404,
    never a 403); on what it shows, reading and the view's `member_actions` (resending) are for any
    member, everything else and the view's `admin_actions` for the account's admins (staff are
    admins of every account). The object checked carries its account as `account_id` (an account,
    a destination, an event, a member); views whose objects do not only allow member actions on them.
    """

    message = "Your role on this account does not allow this."

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated)

    def has_object_permission(self, request, view, obj) -> bool:
        action = getattr(view, "action", None)
        if action not in getattr(view, "admin_actions", ()) and (
            request.method in permissions.SAFE_METHODS or action in getattr(view, "member_actions", ())
        ):
            return True
        # One query per account and request: a nested view checks its account, then its object.
        roles = request.__dict__.setdefault("_account_roles", {})
        if obj.account_id not in roles:
            roles[obj.account_id] = account_role(user=request.user, account_id=obj.account_id)
        return roles[obj.account_id] == ADMIN
