-- Operators' actions (status 0, subject cli:<user>) apart from token requests: `gateway revoke`
-- (tokens_revoked) and `gateway tenants add|remove` (mapping_changed), newest first. The other
-- views count token requests per event, so these rows never add to token_issued/token_reused.
CREATE OR REPLACE VIEW audit_admin_actions AS
SELECT occurred_at,
       event,
       subject,
       tenant_id,
       workspace_id,
       dashboard_id,
       detail
FROM audit_events
WHERE event IN ('tokens_revoked', 'mapping_changed')
ORDER BY occurred_at DESC;
