/* The serialized google.protobuf.FileDescriptorSet of every proto harnessd
 * serves (with imports), generated at build time; server reflection reads it. */
#ifndef HS_PROTO_DESCRIPTOR_SET_H
#define HS_PROTO_DESCRIPTOR_SET_H
#include <stddef.h>
extern const unsigned char hs_descriptor_set[];
extern const size_t hs_descriptor_set_len;
#endif
