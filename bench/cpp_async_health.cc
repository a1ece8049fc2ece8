// The yardstick for harnessd's RPC core: gRPC's own C++ async server on the
// same libgrpc, answering /grpc.health.v1.Health/Check with SERVING through
// AsyncGenericService (no codegen), N completion-queue threads.
// Build: g++ -O2 -o cpp_async_health cpp_async_health.cc $(pkg-config --cflags --libs grpc++)
// Run:   ./cpp_async_health 127.0.0.1:50061 2
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace {

class CallData {
 public:
  CallData(grpc::AsyncGenericService* svc, grpc::ServerCompletionQueue* cq)
      : svc_(svc), cq_(cq), stream_(&ctx_) {
    svc_->RequestCall(&ctx_, &stream_, cq_, cq_, this);
  }
  void Proceed(bool ok) {
    switch (state_) {
      case kRequested:
        if (!ok) { delete this; return; }
        new CallData(svc_, cq_);
        state_ = kRead;
        stream_.Read(&req_, this);
        return;
      case kRead: {
        state_ = kFinish;
        if (ctx_.method() != "/grpc.health.v1.Health/Check") {
          stream_.Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "unknown"), this);
          return;
        }
        static const char serving[] = {0x08, 0x01};
        grpc::Slice s(serving, sizeof(serving));
        grpc::ByteBuffer resp(&s, 1);
        stream_.WriteAndFinish(resp, grpc::WriteOptions(), grpc::Status::OK, this);
        return;
      }
      case kFinish:
        delete this;
        return;
    }
  }

 private:
  enum State { kRequested, kRead, kFinish };
  grpc::AsyncGenericService* svc_;
  grpc::ServerCompletionQueue* cq_;
  grpc::GenericServerContext ctx_;
  grpc::GenericServerAsyncReaderWriter stream_;
  grpc::ByteBuffer req_;
  State state_ = kRequested;
};

}  // namespace

int main(int argc, char** argv) {
  std::string addr = argc > 1 ? argv[1] : "127.0.0.1:50061";
  int threads = argc > 2 ? std::atoi(argv[2]) : 2;
  grpc::AsyncGenericService svc;
  grpc::ServerBuilder b;
  b.AddListeningPort(addr, grpc::InsecureServerCredentials());
  b.RegisterAsyncGenericService(&svc);
  std::vector<std::unique_ptr<grpc::ServerCompletionQueue>> cqs;
  for (int i = 0; i < threads; i++) cqs.push_back(b.AddCompletionQueue());
  auto server = b.BuildAndStart();
  if (!server) { std::fprintf(stderr, "cannot listen on %s\n", addr.c_str()); return 1; }
  std::fprintf(stderr, "listening on %s with %d cq threads\n", addr.c_str(), threads);
  std::vector<std::thread> ts;
  for (auto& cq : cqs) {
    ts.emplace_back([&svc, q = cq.get()] {
      for (int i = 0; i < 64; i++) new CallData(&svc, q);
      void* tag; bool ok;
      while (q->Next(&tag, &ok)) static_cast<CallData*>(tag)->Proceed(ok);
    });
  }
  for (auto& t : ts) t.join();
}
