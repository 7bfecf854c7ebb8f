namespace ProxySelection.IntegrationTests.ScaleOut;

/// <summary>
/// SOCKS5 clients that stop between their method negotiation and their request, so a test decides when each one sends
/// it (or that it never does): a connection the proxy has accepted and whose handshake it has not read yet.
/// </summary>
internal static class PausedSocksClients
{
    /// <summary>The program (python3): its header says its arguments and its lines.</summary>
    public const string Program = """
        # paused_socks.py SERVICE PORT TARGET PATH COUNT GOFILE: COUNT MPTCP SOCKS5 clients of SERVICE:PORT that finish their
        # method negotiation, print "ready I PORT", and wait (at most 60 s) for GOFILE. Its first line lists the clients to keep
        # silent: they never send their request and wait (at most 60 s) for the proxy to close them ("closed I PORT S"). The
        # others send CONNECT TARGET:80, GET PATH, and print "done I PORT REPLY SHA256" or "failed I PORT ERROR".
        import hashlib, os, socket, sys, threading, time

        service, port, target, path, count, gofile = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6]
        lock = threading.Lock()

        def say(line):
            with lock:
                print(line, flush=True)

        def exactly(s, n):
            data = b""
            while len(data) < n:
                chunk = s.recv(n - len(data))
                if not chunk:
                    raise ConnectionError("closed after %d of %d bytes" % (len(data), n))
                data += chunk
            return data

        def client(i, ready):
            lport = 0
            try:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
                s.settimeout(60)
                s.connect((service, port))
                lport = s.getsockname()[1]
                s.sendall(b"\x05\x01\x00")
                if exactly(s, 2) != b"\x05\x00":
                    raise ConnectionError("method refused")
                say("ready %d %d" % (i, lport))
                ready.set()
                deadline = time.time() + 60
                while not os.path.exists(gofile) and time.time() < deadline:
                    time.sleep(0.01)
                with open(gofile) as f:
                    silent = f.readline().split()
                if str(i) in silent:
                    start = time.time()
                    try:
                        while s.recv(4096):
                            pass
                    except OSError:
                        pass
                    say("closed %d %d %.1f" % (i, lport, time.time() - start))
                    return
                s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton(target) + (80).to_bytes(2, "big"))
                reply = exactly(s, 10)
                if reply[1] != 0:
                    say("failed %d %d reply %d" % (i, lport, reply[1]))
                    return
                s.sendall(("GET %s HTTP/1.0\r\nHost: %s\r\n\r\n" % (path, target)).encode())
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                body = data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in data else b""
                say("done %d %d %d %s" % (i, lport, reply[1], hashlib.sha256(body).hexdigest()))
            except Exception as e:
                ready.set()
                say("failed %d %d %s" % (i, lport, repr(e)))

        threads = []
        for i in range(count):
            ready = threading.Event()
            t = threading.Thread(target=client, args=(i, ready))
            t.start()
            ready.wait(60)
            threads.append(t)
        say("all ready")
        for t in threads:
            t.join(120)
        """;

    /// <summary>Writes the program into <paramref name="directory"/>; returns its path.</summary>
    public static string Write(string directory)
    {
        var path = Path.Combine(directory, "paused-socks.py");
        File.WriteAllText(path, Program);
        return path;
    }

    /// <summary>Lets every waiting client go on, except <paramref name="silent"/>, which never send their request (written whole, then renamed).</summary>
    public static void Go(string goFile, IEnumerable<int> silent)
    {
        File.WriteAllText(goFile + ".tmp", string.Join(' ', silent) + "\n");
        File.Move(goFile + ".tmp", goFile);
    }
}
