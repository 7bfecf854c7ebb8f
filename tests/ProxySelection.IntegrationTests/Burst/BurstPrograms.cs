using System.Globalization;
using ProxySelection.Lab;

namespace ProxySelection.IntegrationTests.Burst;

/// <summary>
/// The burst's clients and server, written as the reporters did it (plain Python sockets, no code of ours): a
/// multi-port accept-everything server that prints one line per accepted connection, and a client that opens one MPTCP
/// connection per port at once and reports, per connection, whether it worked and whether it got its second subflow.
/// </summary>
internal static class BurstPrograms
{
    /// <summary>The server: <c>server.py tcp|mptcp FIRST_PORT COUNT SECONDS</c>; "listening" once every port is bound, then "accept PORT" lines.</summary>
    private const string Server = """
        import selectors, socket, sys, time
        proto = 262 if sys.argv[1] == "mptcp" else 0
        first, count, seconds = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
        sel = selectors.DefaultSelector()
        for port in range(first, first + count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, proto)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", port))
            s.listen(1024)
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, ("listen", port))
        print("listening", flush=True)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for key, _ in sel.select(0.5):
                kind, port = key.data
                if kind == "listen":
                    try:
                        conn, _ = key.fileobj.accept()
                    except OSError:
                        continue
                    print("accept", port, flush=True)
                    conn.setblocking(True)
                    try:
                        conn.sendall(b"hello\n")
                    except OSError:
                        conn.close()
                        continue
                    conn.setblocking(False)
                    sel.register(conn, selectors.EVENT_READ, ("conn", port))
                else:
                    try:
                        data = key.fileobj.recv(4096)
                    except OSError:
                        data = b""
                    if not data:
                        sel.unregister(key.fileobj)
                        key.fileobj.close()
        """;

    /// <summary>
    /// The clients: <c>client.py SERVER FIRST_PORT COUNT SUBFLOW_WAIT SOURCES</c> (SOURCES: comma-separated addresses, client i
    /// binds the i-th modulo their number); all connect at once (a barrier), each reads the
    /// greeting, then waits up to SUBFLOW_WAIT s for a second established subflow (MPTCP_TCPINFO), says bye and closes.
    /// One line per client: "ok PORT SUBFLOWS" (-1: fell back to TCP) or "fail PORT ERROR".
    /// </summary>
    private const string Client = """
        import ctypes, socket, struct, sys, threading, time
        server, first, count, wait = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
        sources = sys.argv[5].split(",")
        barrier = threading.Barrier(count)
        lock = threading.Lock()
        libc = ctypes.CDLL(None, use_errno=True)
        def subflows(s):
            # Established subflows beyond the first (MPTCP_TCPINFO: one tcp_info per subflow, tcpi_state first), not
            # MPTCP_INFO's count, which counts a join from its SYN on: a client closing then would end the connection
            # before the join reaches anyone.
            try:
                s.getsockopt(284, 1, 256)
            except OSError:
                return -1
            buf = ctypes.create_string_buffer(16 + 8 * 8)
            struct.pack_into("IIII", buf, 0, 16, 0, 0, 8)
            size = ctypes.c_uint32(len(buf))
            if libc.getsockopt(s.fileno(), 284, 2, buf, ctypes.byref(size)) != 0:
                return -1
            n = min(struct.unpack_from("I", buf, 4)[0], 8)
            return sum(1 for i in range(n) if buf.raw[16 + 8 * i] == 1) - 1
        def run(port):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
            s.settimeout(30)
            try:
                s.bind((sources[(port - first) % len(sources)], 0))
                barrier.wait(30)
                s.connect((server, port))
                greeting = b""
                while not greeting.endswith(b"\n"):
                    chunk = s.recv(64)
                    if not chunk:
                        raise OSError("closed before the greeting")
                    greeting += chunk
                end = time.monotonic() + wait
                n = subflows(s)
                while n == 0 and time.monotonic() < end:
                    time.sleep(0.05)
                    n = subflows(s)
                s.sendall(b"bye\n")
                line = f"ok {port} {n}"
            except Exception as e:
                line = f"fail {port} {type(e).__name__}: {e}"
            finally:
                s.close()
            with lock:
                print(line, flush=True)
        threads = [threading.Thread(target=run, args=(p,)) for p in range(first, first + count)]
        for t in threads: t.start()
        for t in threads: t.join()
        """;

    /// <summary>Writes both programs into <paramref name="directory"/>; returns their paths.</summary>
    public static (string Server, string Client) Write(string directory)
    {
        var server = Path.Combine(directory, "burst-server.py");
        var client = Path.Combine(directory, "burst-client.py");
        File.WriteAllText(server, Server);
        File.WriteAllText(client, Client);
        return (server, client);
    }

    public static string Arg(double value) => value.ToString(CultureInfo.InvariantCulture);

    public static LabProcess StartServer(NetNamespace ns, string script, bool mptcp, int firstPort, int count, TimeSpan lifetime) =>
        ns.StartProcess("python3", [script, mptcp ? "mptcp" : "tcp", Arg(firstPort), Arg(count), Arg(lifetime.TotalSeconds)]);
}
