/* Server reflection (grpc.reflection.v1 and v1alpha) over the descriptor set
 * embedded at build time.
 *
 * At start the FileDescriptorSet is split into its files, each kept as the
 * exact bytes protoc wrote with their source info (answers send them
 * unchanged, so grpcurl describe shows the comments), and every symbol they
 * declare (messages, fields, oneofs, enums and their values, services,
 * methods, extensions) is indexed in a sorted array. Requests are answered with the file
 * and its transitive dependencies. v1alpha is wire-identical to v1: its
 * requests are read through the v1 structs and its responses are v1 structs
 * sent under the v1alpha descriptor. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "descriptor_set.h"
#include "google/protobuf/descriptor.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "grpc/reflection/v1alpha/reflection.pb-c.h"
#include "std_services.h"

_Static_assert(sizeof(Grpc__Reflection__V1__ServerReflectionRequest) ==
		       sizeof(Grpc__Reflection__V1alpha__ServerReflectionRequest),
	       "reflection v1 and v1alpha requests must share a layout");
_Static_assert(sizeof(Grpc__Reflection__V1__ServerReflectionResponse) ==
		       sizeof(Grpc__Reflection__V1alpha__ServerReflectionResponse),
	       "reflection v1 and v1alpha responses must share a layout");

typedef struct file_entry {
	char *name;
	const uint8_t *data; /* into hs_descriptor_set */
	size_t len;
	size_t *deps; /* indexes of dependencies */
	size_t n_deps;
} file_entry;

typedef struct symbol {
	char *name;
	size_t file;
} symbol;

struct hs_reflection {
	file_entry *files;
	size_t n_files;
	symbol *syms;
	size_t n_syms, cap_syms;
	hs_rpc_server *srv;
};

/* --- reading the descriptor set ----------------------------------------- */

static bool read_varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
	uint64_t v = 0;
	for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
		uint8_t b = *(*p)++;
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*out = v;
			return true;
		}
	}
	return false;
}

static int add_symbol(hs_reflection *r, const char *prefix, const char *name, size_t file)
{
	if (r->n_syms == r->cap_syms) {
		size_t cap = r->cap_syms ? r->cap_syms * 2 : 256;
		symbol *s = realloc(r->syms, cap * sizeof(*s));
		if (s == NULL)
			return HS_INTERNAL;
		r->syms = s;
		r->cap_syms = cap;
	}
	size_t n = strlen(prefix) + strlen(name) + 2;
	char *full = malloc(n);
	if (full == NULL)
		return HS_INTERNAL;
	snprintf(full, n, "%s%s%s", prefix, prefix[0] ? "." : "", name);
	r->syms[r->n_syms++] = (symbol){ full, file };
	return HS_OK;
}

/* An enum and its values. Values are found both as protobuf scopes them
 * (siblings of the enum: "pkg.VALUE") and under the enum ("pkg.Enum.VALUE"),
 * as grpc-go's resolver does. */
static int index_enum(hs_reflection *r, const char *prefix,
		      const Google__Protobuf__EnumDescriptorProto *e, size_t file)
{
	int rc = add_symbol(r, prefix, e->name, file);
	char inner[512];
	snprintf(inner, sizeof(inner), "%s%s%s", prefix, prefix[0] ? "." : "", e->name);
	for (size_t i = 0; i < e->n_value && rc == HS_OK; i++)
		if ((rc = add_symbol(r, prefix, e->value[i]->name, file)) == HS_OK)
			rc = add_symbol(r, inner, e->value[i]->name, file);
	return rc;
}

/* A message and everything declared inside it: fields, oneofs, nested
 * messages and enums, extensions. depth bounds the recursion (descriptors
 * are ours, but a bound costs nothing). */
static int index_message(hs_reflection *r, const char *prefix,
			 const Google__Protobuf__DescriptorProto *m, size_t file, int depth)
{
	int rc = add_symbol(r, prefix, m->name, file);
	if (rc != HS_OK || depth > 32)
		return rc;
	char inner[512];
	int n = snprintf(inner, sizeof(inner), "%s%s%s", prefix, prefix[0] ? "." : "", m->name);
	if (n < 0 || (size_t)n >= sizeof(inner))
		return HS_INVALID; /* our own descriptors never nest this deep */
	for (size_t i = 0; i < m->n_field && rc == HS_OK; i++)
		rc = add_symbol(r, inner, m->field[i]->name, file);
	for (size_t i = 0; i < m->n_oneof_decl && rc == HS_OK; i++)
		rc = add_symbol(r, inner, m->oneof_decl[i]->name, file);
	for (size_t i = 0; i < m->n_nested_type && rc == HS_OK; i++)
		rc = index_message(r, inner, m->nested_type[i], file, depth + 1);
	for (size_t i = 0; i < m->n_enum_type && rc == HS_OK; i++)
		rc = index_enum(r, inner, m->enum_type[i], file);
	for (size_t i = 0; i < m->n_extension && rc == HS_OK; i++)
		rc = add_symbol(r, inner, m->extension[i]->name, file);
	return rc;
}

static int index_file(hs_reflection *r, const Google__Protobuf__FileDescriptorProto *fd,
		      size_t file)
{
	const char *pkg = fd->package ? fd->package : "";
	int rc = HS_OK;
	for (size_t i = 0; i < fd->n_message_type && rc == HS_OK; i++)
		rc = index_message(r, pkg, fd->message_type[i], file, 0);
	for (size_t i = 0; i < fd->n_enum_type && rc == HS_OK; i++)
		rc = index_enum(r, pkg, fd->enum_type[i], file);
	for (size_t i = 0; i < fd->n_extension && rc == HS_OK; i++)
		rc = add_symbol(r, pkg, fd->extension[i]->name, file);
	for (size_t i = 0; i < fd->n_service && rc == HS_OK; i++) {
		const Google__Protobuf__ServiceDescriptorProto *s = fd->service[i];
		rc = add_symbol(r, pkg, s->name, file);
		char svc[512];
		snprintf(svc, sizeof(svc), "%s%s%s", pkg, pkg[0] ? "." : "", s->name);
		for (size_t j = 0; j < s->n_method && rc == HS_OK; j++)
			rc = add_symbol(r, svc, s->method[j]->name, file);
	}
	return rc;
}

static int cmp_sym(const void *a, const void *b)
{
	return strcmp(((const symbol *)a)->name, ((const symbol *)b)->name);
}

static ssize_t find_file(const hs_reflection *r, const char *name)
{
	for (size_t i = 0; i < r->n_files; i++)
		if (strcmp(r->files[i].name, name) == 0)
			return (ssize_t)i;
	return -1;
}

int hs_reflection_new(hs_reflection **out, hs_error *err)
{
	hs_reflection *r = calloc(1, sizeof(*r));
	if (r == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	const uint8_t *p = hs_descriptor_set, *end = p + hs_descriptor_set_len;
	Google__Protobuf__FileDescriptorProto **parsed = NULL;
	int rc = HS_OK;
	size_t cap = 0;
	/* FileDescriptorSet = repeated FileDescriptorProto file = 1; */
	while (p < end) {
		uint64_t key, len;
		if (!read_varint(&p, end, &key) || key != ((1 << 3) | 2) ||
		    !read_varint(&p, end, &len) || len > (uint64_t)(end - p)) {
			rc = hs_error_set(err, HS_INTERNAL, "embedded descriptor set is corrupt");
			goto done;
		}
		if (r->n_files == cap) {
			cap = cap ? cap * 2 : 16;
			file_entry *f = realloc(r->files, cap * sizeof(*f));
			Google__Protobuf__FileDescriptorProto **pp = realloc(parsed, cap * sizeof(*pp));
			if (f != NULL)
				r->files = f;
			if (pp != NULL)
				parsed = pp;
			if (f == NULL || pp == NULL) {
				rc = hs_error_set(err, HS_INTERNAL, "out of memory");
				goto done;
			}
		}
		Google__Protobuf__FileDescriptorProto *fd =
			google__protobuf__file_descriptor_proto__unpack(NULL, len, p);
		if (fd == NULL || fd->name == NULL) {
			if (fd != NULL)
				google__protobuf__file_descriptor_proto__free_unpacked(fd, NULL);
			rc = hs_error_set(err, HS_INTERNAL, "embedded descriptor set is corrupt");
			goto done;
		}
		parsed[r->n_files] = fd;
		r->files[r->n_files] = (file_entry){ strdup(fd->name), p, (size_t)len, NULL, 0 };
		r->n_files++;
		p += len;
	}
	for (size_t i = 0; i < r->n_files && rc == HS_OK; i++) {
		file_entry *f = &r->files[i];
		if (f->name == NULL) {
			rc = hs_error_set(err, HS_INTERNAL, "out of memory");
			break;
		}
		f->deps = calloc(parsed[i]->n_dependency + 1, sizeof(size_t));
		if (f->deps == NULL) {
			rc = hs_error_set(err, HS_INTERNAL, "out of memory");
			break;
		}
		for (size_t d = 0; d < parsed[i]->n_dependency; d++) {
			ssize_t j = find_file(r, parsed[i]->dependency[d]);
			if (j >= 0)
				f->deps[f->n_deps++] = (size_t)j;
		}
		if (index_file(r, parsed[i], i) != HS_OK)
			rc = hs_error_set(err, HS_INTERNAL, "out of memory");
	}
	if (rc == HS_OK)
		qsort(r->syms, r->n_syms, sizeof(*r->syms), cmp_sym);
done:
	for (size_t i = 0; i < r->n_files; i++)
		google__protobuf__file_descriptor_proto__free_unpacked(parsed[i], NULL);
	free(parsed);
	if (rc != HS_OK) {
		hs_reflection_free(r);
		return rc;
	}
	*out = r;
	return HS_OK;
}

void hs_reflection_free(hs_reflection *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->n_files; i++) {
		free(r->files[i].name);
		free(r->files[i].deps);
	}
	for (size_t i = 0; i < r->n_syms; i++)
		free(r->syms[i].name);
	free(r->files);
	free(r->syms);
	free(r);
}

static ssize_t file_of_symbol(const hs_reflection *r, const char *symbol_name)
{
	symbol key = { (char *)symbol_name, 0 };
	const symbol *s = bsearch(&key, r->syms, r->n_syms, sizeof(*r->syms), cmp_sym);
	return s != NULL ? (ssize_t)s->file : -1;
}

const char *hs_reflection_file_of(const hs_reflection *r, const char *symbol_name)
{
	ssize_t i = file_of_symbol(r, symbol_name);
	return i >= 0 ? r->files[i].name : NULL;
}

/* --- answering ----------------------------------------------------------- */

typedef Grpc__Reflection__V1__ServerReflectionResponse Response;
typedef Grpc__Reflection__V1__ServerReflectionRequest Request;

/* Collects file i and its transitive dependencies, the file itself first. */
static void collect(const hs_reflection *r, size_t i, bool *seen, size_t *order, size_t *n)
{
	if (seen[i])
		return;
	seen[i] = true;
	order[(*n)++] = i;
	for (size_t d = 0; d < r->files[i].n_deps; d++)
		collect(r, r->files[i].deps[d], seen, order, n);
}

static int answer_file(hs_rpc_call *call, const hs_reflection *r, size_t file, Response *resp)
{
	bool *seen = hs_rpc_call_alloc(call, r->n_files * sizeof(bool));
	size_t *order = hs_rpc_call_alloc(call, r->n_files * sizeof(size_t));
	Grpc__Reflection__V1__FileDescriptorResponse *fdr = hs_rpc_call_alloc(call, sizeof(*fdr));
	if (seen == NULL || order == NULL || fdr == NULL)
		return HS_INTERNAL;
	size_t n = 0;
	collect(r, file, seen, order, &n);
	grpc__reflection__v1__file_descriptor_response__init(fdr);
	fdr->file_descriptor_proto = hs_rpc_call_alloc(call, n * sizeof(ProtobufCBinaryData));
	if (fdr->file_descriptor_proto == NULL)
		return HS_INTERNAL;
	for (size_t i = 0; i < n; i++) {
		fdr->file_descriptor_proto[i].data = (uint8_t *)r->files[order[i]].data;
		fdr->file_descriptor_proto[i].len = r->files[order[i]].len;
	}
	fdr->n_file_descriptor_proto = n;
	resp->message_response_case =
		GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE;
	resp->file_descriptor_response = fdr;
	return HS_OK;
}

static int answer_error(hs_rpc_call *call, Response *resp, int code, const char *what,
			const char *name)
{
	Grpc__Reflection__V1__ErrorResponse *e = hs_rpc_call_alloc(call, sizeof(*e));
	if (e == NULL)
		return HS_INTERNAL;
	grpc__reflection__v1__error_response__init(e);
	e->error_code = hs_code_to_grpc((hs_code)code);
	size_t len = strlen(what) + strlen(name) + 4;
	e->error_message = hs_rpc_call_alloc(call, len);
	if (e->error_message == NULL)
		return HS_INTERNAL;
	snprintf(e->error_message, len, "%s %s", what, name);
	resp->message_response_case =
		GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
	resp->error_response = e;
	return HS_OK;
}

static int answer_list(hs_rpc_call *call, const hs_reflection *r, Response *resp)
{
	const char *const *names;
	size_t n = hs_rpc_server_services(r->srv, &names);
	Grpc__Reflection__V1__ListServiceResponse *l = hs_rpc_call_alloc(call, sizeof(*l));
	Grpc__Reflection__V1__ServiceResponse *items = hs_rpc_call_alloc(call, n * sizeof(*items));
	Grpc__Reflection__V1__ServiceResponse **ptrs = hs_rpc_call_alloc(call, n * sizeof(*ptrs));
	if (l == NULL || items == NULL || ptrs == NULL)
		return HS_INTERNAL;
	grpc__reflection__v1__list_service_response__init(l);
	for (size_t i = 0; i < n; i++) {
		grpc__reflection__v1__service_response__init(&items[i]);
		items[i].name = (char *)names[i];
		ptrs[i] = &items[i];
	}
	l->service = ptrs;
	l->n_service = n;
	resp->message_response_case =
		GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE;
	resp->list_services_response = l;
	return HS_OK;
}

static int answer(hs_rpc_call *call, const Request *req, Response *resp)
{
	const hs_reflection *r = hs_rpc_call_payload(call);
	ssize_t file;
	switch (req->message_request_case) {
	case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
		return answer_list(call, r, resp);
	case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
		file = find_file(r, req->file_by_filename);
		if (file < 0)
			return answer_error(call, resp, HS_NOT_FOUND, "file not found:", req->file_by_filename);
		return answer_file(call, r, (size_t)file, resp);
	case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL:
		file = file_of_symbol(r, req->file_containing_symbol);
		if (file < 0)
			return answer_error(call, resp, HS_NOT_FOUND, "symbol not found:",
					    req->file_containing_symbol);
		return answer_file(call, r, (size_t)file, resp);
	case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION:
		return answer_error(call, resp, HS_NOT_FOUND, "extension not found in",
				    req->file_containing_extension
					    ? req->file_containing_extension->containing_type
					    : "");
	case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE: {
		if (file_of_symbol(r, req->all_extension_numbers_of_type) < 0)
			return answer_error(call, resp, HS_NOT_FOUND, "type not found:",
					    req->all_extension_numbers_of_type);
		Grpc__Reflection__V1__ExtensionNumberResponse *e = hs_rpc_call_alloc(call, sizeof(*e));
		if (e == NULL)
			return HS_INTERNAL;
		grpc__reflection__v1__extension_number_response__init(e);
		e->base_type_name = req->all_extension_numbers_of_type; /* none of ours has extensions */
		resp->message_response_case =
			GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ALL_EXTENSION_NUMBERS_RESPONSE;
		resp->all_extension_numbers_response = e;
		return HS_OK;
	}
	default:
		return answer_error(call, resp, HS_INVALID, "empty reflection request", "");
	}
}

static int info(hs_rpc_call *call, const ProtobufCMessage *msg, const ProtobufCMessageDescriptor *out_desc,
		hs_error *err)
{
	if (msg == NULL)
		return HS_OK; /* client finished: the core ends the stream with OK */
	const Request *req = (const Request *)msg;
	Response *resp = hs_rpc_call_alloc(call, sizeof(*resp));
	if (resp == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	grpc__reflection__v1__server_reflection_response__init(resp);
	resp->base.descriptor = out_desc;
	resp->valid_host = req->host;
	resp->original_request = (Request *)req;
	if (answer(call, req, resp) != HS_OK)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	int rc = hs_rpc_call_send(call, &resp->base);
	if (rc == HS_LIMIT) /* a client that sends but never reads */
		return hs_error_set(err, HS_LIMIT, "reflection client is not reading its responses");
	return HS_OK; /* HS_CANCELLED: the call is ending anyway */
}

static int info_v1(hs_rpc_call *call, const ProtobufCMessage *msg, hs_error *err)
{
	return info(call, msg, &grpc__reflection__v1__server_reflection_response__descriptor, err);
}

static int info_v1alpha(hs_rpc_call *call, const ProtobufCMessage *msg, hs_error *err)
{
	/* The v1alpha request has the v1 layout; its nested original_request is
	 * packed through its own (v1alpha) descriptor, which describes the same
	 * fields. */
	return info(call, msg, &grpc__reflection__v1alpha__server_reflection_response__descriptor, err);
}

int hs_reflection_register(hs_reflection *r, hs_rpc_server *srv, hs_error *err)
{
	static const hs_rpc_handler v1[] = {
		{ "ServerReflectionInfo", HS_RPC_BIDI_STREAM, HS_RPC_PUBLIC, NULL, info_v1 },
	};
	static const hs_rpc_handler v1alpha[] = {
		{ "ServerReflectionInfo", HS_RPC_BIDI_STREAM, HS_RPC_PUBLIC, NULL, info_v1alpha },
	};
	r->srv = srv;
	int rc = hs_rpc_server_add_service(srv, &grpc__reflection__v1__server_reflection__descriptor,
					   v1, 1, r, err);
	if (rc != HS_OK)
		return rc;
	return hs_rpc_server_add_service(srv, &grpc__reflection__v1alpha__server_reflection__descriptor,
					 v1alpha, 1, r, err);
}
