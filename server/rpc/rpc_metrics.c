/* The RPC core's metrics: go-grpc-prometheus' server families, per
 * registered method, and the worker lanes' queue depth and rejections.
 *
 * Every instrument is allocated with its method at registration
 * (rpc_method.mx); the hot path adds to it with one relaxed atomic
 * (hs_rpc__count; nothing when the server has no registry) and never looks
 * anything up. The collector walks the method table at scrape time; the
 * table does not change after start. */
#include <grpc/status.h>
#include <string.h>

#include "rpc_internal.h"

/* grpc-go's codes.Code names, as go-grpc-prometheus labels them. */
static const char *const code_names[17] = {
	"OK",		    "Canceled",	      "Unknown",	  "InvalidArgument",
	"DeadlineExceeded", "NotFound",	      "AlreadyExists",	  "PermissionDenied",
	"ResourceExhausted", "FailedPrecondition", "Aborted",	  "OutOfRange",
	"Unimplemented",    "Internal",	      "Unavailable",	  "DataLoss",
	"Unauthenticated",
};

void hs_rpc__metrics_init(rpc_method *m)
{
	memset(&m->mx, 0, sizeof(m->mx));
	hs_histogram_init(&m->mx.seconds, hs_metrics_default_seconds, 11, 1e6);
}

static const char *type_of(const rpc_method *m)
{
	switch (m->handler.kind) {
	case HS_RPC_SERVER_STREAM:
		return "server_stream";
	case HS_RPC_BIDI_STREAM:
		return "bidi_stream";
	default:
		return "unary";
	}
}

typedef enum fam { F_STARTED, F_HANDLED, F_RECEIVED, F_SENT, F_SECONDS } fam;

static void family(hs_metrics_out *out, const hs_rpc_server *srv, fam f, const char *name,
		   const char *type, const char *help)
{
	hs_metrics_family(out, name, type, help);
	for (size_t i = 0; i < srv->n_methods; i++) {
		const rpc_method *m = &srv->methods[i];
		const char *labels[] = { "grpc_type", type_of(m), "grpc_service", m->service,
					 "grpc_method", m->desc->name, NULL, NULL, NULL };
		switch (f) {
		case F_STARTED:
			hs_metrics_sample(out, name, labels, (double)hs_counter_get(&m->mx.started));
			break;
		case F_RECEIVED:
			hs_metrics_sample(out, name, labels, (double)hs_counter_get(&m->mx.received));
			break;
		case F_SENT:
			hs_metrics_sample(out, name, labels, (double)hs_counter_get(&m->mx.sent));
			break;
		case F_SECONDS:
			hs_metrics_histogram(out, name, labels, &m->mx.seconds);
			break;
		case F_HANDLED:
			labels[6] = "grpc_code";
			for (int c = 0; c < 17; c++) {
				uint64_t v = hs_counter_get(&m->mx.handled[c]);
				if (v == 0 && c != GRPC_STATUS_OK)
					continue; /* OK always; other codes once seen */
				labels[7] = code_names[c];
				hs_metrics_sample(out, name, labels, (double)v);
			}
			break;
		}
	}
}

void hs_rpc__collect(hs_metrics_out *out, void *payload)
{
	hs_rpc_server *srv = payload;
	family(out, srv, F_STARTED, "grpc_server_started_total", "counter",
	       "Total number of RPCs started on the server.");
	family(out, srv, F_HANDLED, "grpc_server_handled_total", "counter",
	       "Total number of RPCs completed on the server, regardless of success or failure.");
	family(out, srv, F_RECEIVED, "grpc_server_msg_received_total", "counter",
	       "Total number of RPC stream messages received on the server.");
	family(out, srv, F_SENT, "grpc_server_msg_sent_total", "counter",
	       "Total number of gRPC stream messages sent by the server.");
	family(out, srv, F_SECONDS, "grpc_server_handling_seconds", "histogram",
	       "Histogram of response latency (seconds) of gRPC that had been application-level "
	       "handled by the server.");
	static const char *const lane_label[N_LANES] = { "main", "long", "liveness" };
	hs_metrics_family(out, "harness_rpc_queue_depth", "gauge",
			  "Calls waiting for a worker, by lane.");
	for (int l = 0; l < N_LANES; l++) {
		const char *labels[] = { "lane", lane_label[l], NULL };
		hs_metrics_sample(out, "harness_rpc_queue_depth", labels,
				  srv->lanes[l] != NULL ? (double)hs_pool_queued(srv->lanes[l]) : 0);
	}
	hs_metrics_family(out, "harness_rpc_rejected_total", "counter",
			  "Calls refused RESOURCE_EXHAUSTED because a lane (or a user's share of it) "
			  "was full, by lane.");
	for (int l = 0; l < N_LANES; l++) {
		const char *labels[] = { "lane", lane_label[l], NULL };
		hs_metrics_sample(out, "harness_rpc_rejected_total", labels,
				  (double)hs_counter_get(&srv->rejected[l]));
	}
}
