//! The gRPC adapter: wire request → domain types → store → wire response. No rules live here.

pub mod convert;

use std::sync::Arc;

use tierline_proto::customer as pb;
use tierline_proto::customer::customer_service_server::CustomerService;
use tierline_proto::tonic::{self, Request, Response, Status};
use tierline_runtime::Violations;
use tierline_runtime::wire::{self, text};

use crate::domain::{CustomerFilter, CustomerId, TieringPolicy};
use crate::error::Error;
use crate::store::CustomerStore;
use convert::WireContext;

/// The customer service's gRPC handlers over a store.
pub struct CustomerApi<S> {
    store: Arc<S>,
    wire: WireContext,
    tiering: TieringPolicy,
}

impl<S: CustomerStore> CustomerApi<S> {
    /// Handlers over `store`.
    pub fn new(store: Arc<S>, wire: WireContext, tiering: TieringPolicy) -> Self {
        CustomerApi {
            store,
            wire,
            tiering,
        }
    }

    fn to_wire(&self, c: &crate::domain::Customer) -> pb::Customer {
        convert::customer_to_wire(c, &self.wire.reporting_currency)
    }
}

fn customer_id(field: &str, raw: &str) -> Result<CustomerId, Error> {
    wire::uuid(raw)
        .map(CustomerId)
        .map_err(|e| Error::invalid(field, e))
}

fn idempotency_key(raw: &str) -> Result<Option<String>, String> {
    let key = text(raw, 128, false)?;
    Ok(if key.is_empty() { None } else { Some(key) })
}

/// Names violations found on the stored profile (rules between fields) by their request path.
fn under_customer(err: Error) -> Error {
    match err {
        Error::InvalidArgument(v) => {
            let mut nested = Violations::new();
            nested.extend_nested("customer", v);
            Error::InvalidArgument(nested)
        }
        other => other,
    }
}

fn expected_version(raw: Option<i64>) -> Result<Option<i64>, Error> {
    match raw {
        Some(v) if v < 1 => Err(Error::invalid("expected_version", "versions start at 1")),
        other => Ok(other),
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl<S: CustomerStore> CustomerService for CustomerApi<S> {
    async fn create_customer(
        &self,
        request: Request<pb::CreateCustomerRequest>,
    ) -> Reply<pb::Customer> {
        let req = request.into_inner();
        let mut v = Violations::new();
        let profile = match &req.customer {
            Some(c) => v.take_nested("", self.wire.profile(c)),
            None => {
                v.add("customer", "required");
                None
            }
        };
        if req.identities.len() > 20 {
            v.add("identities", "at most 20");
        }
        let mut identities = Vec::new();
        for (i, identity) in req.identities.iter().enumerate() {
            if let Some(parsed) = v.take_nested(
                &format!("identities[{i}]"),
                self.wire.identity(identity, ""),
            ) {
                identities.push(parsed);
            }
        }
        let key = v.take("idempotency_key", idempotency_key(&req.idempotency_key));
        let (Some(profile), Some(key)) = (profile.filter(|_| v.is_empty()), key) else {
            return Err(Error::InvalidArgument(v).into());
        };
        let customer = self
            .store
            .create(
                crate::store::NewCustomer {
                    profile,
                    identities,
                },
                key,
            )
            .await?;
        Ok(Response::new(self.to_wire(&customer)))
    }

    async fn get_customer(&self, request: Request<pb::GetCustomerRequest>) -> Reply<pb::Customer> {
        let id = customer_id("id", &request.get_ref().id)?;
        let customer = self.store.get(id).await?;
        Ok(Response::new(self.to_wire(&customer)))
    }

    async fn update_customer(
        &self,
        request: Request<pb::UpdateCustomerRequest>,
    ) -> Reply<pb::Customer> {
        let req = request.into_inner();
        let Some(c) = req.customer.as_ref() else {
            return Err(Error::invalid("customer", "required").into());
        };
        let id = customer_id("customer.id", &c.id)?;
        let patch = self
            .wire
            .patch(c, req.update_mask.as_ref())
            .map_err(Error::from)?;
        let version = expected_version(req.expected_version)?;
        let customer = self
            .store
            .update(id, patch, version)
            .await
            .map_err(under_customer)?;
        Ok(Response::new(self.to_wire(&customer)))
    }

    async fn list_customers(
        &self,
        request: Request<pb::ListCustomersRequest>,
    ) -> Reply<pb::ListCustomersResponse> {
        let req = request.into_inner();
        let mut v = Violations::new();
        let limit = v.take("page_size", wire::page_size(req.page_size));
        let after = v.take("page_token", wire::decode_id_cursor(&req.page_token));
        let tier = v.take("tier", tierline_types::Tier::from_wire(req.tier));
        let stage = v.take(
            "lifecycle_stage",
            convert::lifecycle_stage(req.lifecycle_stage),
        );
        let segment = v.take("segment", text(&req.segment, 100, false));
        let manager = v.take(
            "account_manager_id",
            text(&req.account_manager_id, 128, false),
        );
        let (Some(limit), Some(after), Some(tier), Some(stage), Some(segment), Some(manager)) =
            (limit, after, tier, stage, segment, manager)
        else {
            return Err(Error::InvalidArgument(v).into());
        };
        let filter = CustomerFilter {
            tier,
            segment: Some(segment).filter(|s| !s.is_empty()),
            lifecycle_stage: stage,
            account_manager_id: Some(manager).filter(|s| !s.is_empty()),
            key_accounts_only: req.key_accounts_only,
            show_deleted: req.show_deleted,
        };
        let page = self.store.list(filter, after, limit).await?;
        Ok(Response::new(pb::ListCustomersResponse {
            customers: page.items.iter().map(|c| self.to_wire(c)).collect(),
            next_page_token: page.next.map(wire::encode_id_cursor).unwrap_or_default(),
        }))
    }

    async fn delete_customer(
        &self,
        request: Request<pb::DeleteCustomerRequest>,
    ) -> Reply<pb::Customer> {
        let req = request.into_inner();
        let id = customer_id("id", &req.id)?;
        let version = expected_version(req.expected_version)?;
        let customer = self.store.delete(id, version).await?;
        Ok(Response::new(self.to_wire(&customer)))
    }

    async fn undelete_customer(
        &self,
        request: Request<pb::UndeleteCustomerRequest>,
    ) -> Reply<pb::Customer> {
        let id = customer_id("id", &request.get_ref().id)?;
        let customer = self.store.undelete(id).await?;
        Ok(Response::new(self.to_wire(&customer)))
    }

    async fn add_identity(&self, request: Request<pb::AddIdentityRequest>) -> Reply<pb::Customer> {
        let req = request.into_inner();
        let id = customer_id("customer_id", &req.customer_id)?;
        let Some(identity) = req.identity.as_ref() else {
            return Err(Error::invalid("identity", "required").into());
        };
        let identity = self
            .wire
            .identity(identity, &req.region_code)
            .map_err(|v| {
                let mut nested = Violations::new();
                nested.extend_nested("identity", v);
                Error::InvalidArgument(nested)
            })?;
        let customer = self.store.add_identity(id, identity).await?;
        Ok(Response::new(self.to_wire(&customer)))
    }

    async fn remove_identity(
        &self,
        request: Request<pb::RemoveIdentityRequest>,
    ) -> Reply<pb::Customer> {
        let req = request.into_inner();
        let id = customer_id("customer_id", &req.customer_id)?;
        let value = parse_identity_ref(&self.wire, req.identity.as_ref())?;
        let customer = self.store.remove_identity(id, value).await?;
        Ok(Response::new(self.to_wire(&customer)))
    }

    async fn lookup_customers(
        &self,
        request: Request<pb::LookupCustomersRequest>,
    ) -> Reply<pb::LookupCustomersResponse> {
        let value = parse_identity_ref(&self.wire, request.get_ref().identity.as_ref())?;
        let found = self.store.lookup(&value).await?;
        Ok(Response::new(pb::LookupCustomersResponse {
            customers: found.iter().map(|c| self.to_wire(c)).collect(),
        }))
    }

    async fn resolve_customer(
        &self,
        request: Request<pb::ResolveCustomerRequest>,
    ) -> Reply<pb::ResolveCustomerResponse> {
        let req = request.into_inner();
        let value = parse_identity_ref(&self.wire, req.identity.as_ref())?;
        let name =
            text(&req.display_name, 200, false).map_err(|e| Error::invalid("display_name", e))?;
        // An unknown caller's prospect is named after their identity until someone knows better;
        // the name keeps display_name's limit.
        let name = if name.is_empty() {
            value.as_str().chars().take(200).collect()
        } else {
            name
        };
        let resolved = self.store.resolve(value, name).await?;
        Ok(Response::new(pb::ResolveCustomerResponse {
            customer: Some(self.to_wire(&resolved.customer)),
            created: resolved.created,
            other_customer_ids: resolved.others.iter().map(|c| c.to_string()).collect(),
        }))
    }

    async fn record_interaction(
        &self,
        request: Request<pb::RecordInteractionRequest>,
    ) -> Reply<pb::Interaction> {
        let req = request.into_inner();
        let mut v = Violations::new();
        let id = v.take("customer_id", wire::uuid(&req.customer_id));
        let new = v.take_nested("", convert::new_interaction(req.interaction.as_ref()));
        let key = v.take("idempotency_key", idempotency_key(&req.idempotency_key));
        let (Some(id), Some(new), Some(key)) = (id, new, key) else {
            return Err(Error::InvalidArgument(v).into());
        };
        let recorded = self
            .store
            .record_interaction(CustomerId(id), new, key)
            .await?;
        Ok(Response::new(convert::interaction_to_wire(&recorded)))
    }

    async fn list_interactions(
        &self,
        request: Request<pb::ListInteractionsRequest>,
    ) -> Reply<pb::ListInteractionsResponse> {
        let req = request.into_inner();
        let id = customer_id("customer_id", &req.customer_id)?;
        let limit = wire::page_size(req.page_size).map_err(|e| Error::invalid("page_size", e))?;
        let after = wire::decode_time_id_cursor(&req.page_token)
            .map_err(|e| Error::invalid("page_token", e))?;
        let page = self.store.list_interactions(id, after, limit).await?;
        Ok(Response::new(pb::ListInteractionsResponse {
            interactions: page
                .items
                .iter()
                .map(convert::interaction_to_wire)
                .collect(),
            next_page_token: page
                .next
                .map(|(at, id)| wire::encode_time_id_cursor(at, id))
                .unwrap_or_default(),
        }))
    }

    async fn record_satisfaction(
        &self,
        request: Request<pb::RecordSatisfactionRequest>,
    ) -> Reply<pb::SatisfactionRecord> {
        let req = request.into_inner();
        let mut v = Violations::new();
        let id = v.take("customer_id", wire::uuid(&req.customer_id));
        let new = v.take_nested("", convert::new_satisfaction(req.record.as_ref()));
        let key = v.take("idempotency_key", idempotency_key(&req.idempotency_key));
        let (Some(id), Some(new), Some(key)) = (id, new, key) else {
            return Err(Error::InvalidArgument(v).into());
        };
        let recorded = self
            .store
            .record_satisfaction(CustomerId(id), new, key)
            .await?;
        Ok(Response::new(convert::satisfaction_to_wire(&recorded)))
    }

    async fn list_satisfaction_records(
        &self,
        request: Request<pb::ListSatisfactionRecordsRequest>,
    ) -> Reply<pb::ListSatisfactionRecordsResponse> {
        let req = request.into_inner();
        let id = customer_id("customer_id", &req.customer_id)?;
        let limit = wire::page_size(req.page_size).map_err(|e| Error::invalid("page_size", e))?;
        let after = wire::decode_time_id_cursor(&req.page_token)
            .map_err(|e| Error::invalid("page_token", e))?;
        let page = self.store.list_satisfaction(id, after, limit).await?;
        Ok(Response::new(pb::ListSatisfactionRecordsResponse {
            records: page
                .items
                .iter()
                .map(convert::satisfaction_to_wire)
                .collect(),
            next_page_token: page
                .next
                .map(|(at, id)| wire::encode_time_id_cursor(at, id))
                .unwrap_or_default(),
        }))
    }

    async fn set_tier_override(
        &self,
        request: Request<pb::SetTierOverrideRequest>,
    ) -> Reply<pb::Customer> {
        let req = request.into_inner();
        let mut v = Violations::new();
        let id = v.take("customer_id", wire::uuid(&req.customer_id));
        let tier = v.take("tier", convert::required_tier(req.tier));
        let reason = v.take("reason", text(&req.reason, 1000, true));
        let (Some(id), Some(tier), Some(reason)) = (id, tier, reason) else {
            return Err(Error::InvalidArgument(v).into());
        };
        let version = expected_version(req.expected_version)?;
        let customer = self
            .store
            .set_tier_override(CustomerId(id), Some((tier, reason)), version)
            .await?;
        Ok(Response::new(self.to_wire(&customer)))
    }

    async fn clear_tier_override(
        &self,
        request: Request<pb::ClearTierOverrideRequest>,
    ) -> Reply<pb::Customer> {
        let req = request.into_inner();
        let id = customer_id("customer_id", &req.customer_id)?;
        let version = expected_version(req.expected_version)?;
        let customer = self.store.set_tier_override(id, None, version).await?;
        Ok(Response::new(self.to_wire(&customer)))
    }

    async fn recompute_tiers(
        &self,
        request: Request<pb::RecomputeTiersRequest>,
    ) -> Reply<pb::RecomputeTiersResponse> {
        let req = request.into_inner();
        let policy = match &req.policy {
            Some(p) => convert::tiering_policy(p).map_err(Error::from)?,
            None => self.tiering,
        };
        let report = self.store.recompute_tiers(policy, req.dry_run).await?;
        Ok(Response::new(convert::report_to_wire(
            &report,
            &policy,
            &self.wire.reporting_currency,
        )))
    }

    async fn merge_customers(
        &self,
        request: Request<pb::MergeCustomersRequest>,
    ) -> Reply<pb::Merge> {
        let req = request.into_inner();
        let mut v = Violations::new();
        let survivor = v.take("survivor_id", wire::uuid(&req.survivor_id));
        let merged = v.take("merged_id", wire::uuid(&req.merged_id));
        let reason = v.take("reason", text(&req.reason, 1000, true));
        if survivor.is_some() && survivor == merged {
            v.add("merged_id", "must differ from survivor_id");
        }
        let (Some(survivor), Some(merged), Some(reason)) = (survivor, merged, reason) else {
            return Err(Error::InvalidArgument(v).into());
        };
        if !v.is_empty() {
            return Err(Error::InvalidArgument(v).into());
        }
        let merge = self
            .store
            .merge(CustomerId(survivor), CustomerId(merged), reason)
            .await?;
        Ok(Response::new(convert::merge_to_wire(&merge)))
    }

    async fn undo_merge(&self, request: Request<pb::UndoMergeRequest>) -> Reply<pb::Merge> {
        let id =
            wire::uuid(&request.get_ref().merge_id).map_err(|e| Error::invalid("merge_id", e))?;
        let merge = self.store.undo_merge(id).await?;
        Ok(Response::new(convert::merge_to_wire(&merge)))
    }
}

fn parse_identity_ref(
    wire: &WireContext,
    r: Option<&tierline_proto::common::IdentityRef>,
) -> Result<crate::domain::IdentityValue, Error> {
    wire.identity_ref(r).map_err(|v| {
        let mut nested = Violations::new();
        nested.extend_nested("identity", v);
        Error::InvalidArgument(nested)
    })
}
