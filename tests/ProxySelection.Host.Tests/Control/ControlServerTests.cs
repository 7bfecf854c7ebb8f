using ProxySelection.Engine.Diagnostics;
using System.Net.Sockets;
using System.Text;
using System.Threading.Channels;
using Microsoft.Extensions.Time.Testing;
using ProxySelection.Host.Control;

namespace ProxySelection.Host.Tests.Control;

/// <summary>The control socket with a stub handler: permissions, bad clients, stale files. Real unix sockets in a temp folder.</summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class ControlServerTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);
    private string _directory = "";

    [SetUp]
    public void CreateDirectory() => _directory = Directory.CreateTempSubdirectory("psel-ctl-").FullName;

    [TearDown]
    public void RemoveDirectory() => Directory.Delete(_directory, recursive: true);

    private string SocketPath => Path.Combine(_directory, "run", "proxysel", "ctl.sock");

    private static byte[] Stub(ControlCommand command) => ControlProtocol.FormatOk(new ReloadReply(true, ControlProtocol.NameOf(command)));

    private ControlServer Start()
    {
        var server = ControlServer.Start(SocketPath, Stub, TimeProvider.System, out var error);
        Assert.That(server, Is.Not.Null, error);
        return server!;
    }

    [Test]
    public async Task Start_NewFolder_Socket0660InFolder0750()
    {
        await using var server = Start();

        Assert.Multiple(() =>
        {
            Assert.That(File.GetUnixFileMode(SocketPath), Is.EqualTo(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.GroupWrite));
            Assert.That(File.GetUnixFileMode(Path.GetDirectoryName(SocketPath)!),
                Is.EqualTo(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute));
        });
    }

    [Test]
    public async Task Client_SendsCommand_GetsTheHandlersReply()
    {
        await using var server = Start();

        var exchange = await ControlClient.SendAsync(SocketPath, ControlCommand.CacheShow, Timeout).WaitAsync(Timeout);

        Assert.That(exchange.Ok, Is.True, exchange.Error);
        Assert.That((string?)exchange.Reply["message"], Is.EqualTo("cache-show"));
    }

    [Test]
    public async Task Connection_GarbageThenValidRequests_ErrorReplyThenServedOnTheSameConnection()
    {
        await using var server = Start();
        using var client = await ConnectAsync();

        var lines = await ExchangeAsync(client, "not json\n{\"command\":\"nope\"}\n\n{\"command\":\"status\"}\n", expectedLines: 3);

        Assert.That(lines[0], Does.StartWith("{\"ok\":false,\"error\":\"malformed JSON"));
        Assert.That(lines[1], Does.StartWith("{\"ok\":false,\"error\":\"unknown command \\\"nope\\\""));
        Assert.That(lines[2], Is.EqualTo("{\"ok\":true,\"applied\":true,\"message\":\"status\"}"));
    }

    [Test]
    public async Task Connection_RequestOverTheLimit_ErrorReplyAndClosed()
    {
        await using var server = Start();
        using var client = await ConnectAsync();

        var lines = await ExchangeAsync(client, new string('x', ControlProtocol.MaxRequestBytes + 10), expectedLines: 1);
        var buffer = new byte[64];
        int more = await client.ReceiveAsync(buffer, SocketFlags.None).WaitAsync(Timeout);

        Assert.That(lines[0], Does.Contain($"request longer than {ControlProtocol.MaxRequestBytes} bytes"));
        Assert.That(more, Is.Zero, "the server closed the connection");
    }

    [Test]
    public async Task Connection_SilentClient_OthersStillServed()
    {
        await using var server = Start();
        using var silent = await ConnectAsync();
        using var halfLine = await ConnectAsync();
        await halfLine.SendAsync(Encoding.UTF8.GetBytes("{\"comm"), SocketFlags.None);

        var exchange = await ControlClient.SendAsync(SocketPath, ControlCommand.Status, Timeout).WaitAsync(Timeout);

        Assert.That(exchange.Ok, Is.True, exchange.Error);
    }

    [Test]
    public async Task Connection_SilentForTheIdleTimeout_ClosedByTheServer()
    {
        var time = new FakeTimeProvider();
        await using var server = ControlServer.Start(SocketPath, Stub, time, out var error)!;
        Assert.That(server, Is.Not.Null, error);
        using var client = await ConnectAsync();
        // One exchange first: the server is serving this client, so its idle deadline is armed.
        await ExchangeAsync(client, "{\"command\":\"status\"}\n", expectedLines: 1);

        time.Advance(ControlServer.IdleTimeout);
        int read = await client.ReceiveAsync(new byte[64], SocketFlags.None).WaitAsync(Timeout);

        Assert.That(read, Is.Zero, "the server closed the silent connection");
    }

    [Test]
    public async Task Connection_RequestBeforeTheIdleTimeout_DeadlineRestartsAndServed()
    {
        var time = new FakeTimeProvider();
        await using var server = ControlServer.Start(SocketPath, Stub, time, out var error)!;
        Assert.That(server, Is.Not.Null, error);
        using var client = await ConnectAsync();
        await ExchangeAsync(client, "{\"command\":\"status\"}\n", expectedLines: 1);

        time.Advance(ControlServer.IdleTimeout - TimeSpan.FromSeconds(1));
        var second = await ExchangeAsync(client, "{\"command\":\"status\"}\n", expectedLines: 1);
        time.Advance(ControlServer.IdleTimeout - TimeSpan.FromSeconds(1));
        var third = await ExchangeAsync(client, "{\"command\":\"status\"}\n", expectedLines: 1);

        Assert.That(second.Concat(third), Is.All.EqualTo("{\"ok\":true,\"applied\":true,\"message\":\"status\"}"));
    }

    [Test]
    public async Task Handler_Throws_ErrorReplyNamingTheCommand()
    {
        await using var server = ControlServer.Start(SocketPath, _ => throw new InvalidOperationException("engine gone"), TimeProvider.System, out _)!;

        var exchange = await ControlClient.SendAsync(SocketPath, ControlCommand.Reload, Timeout).WaitAsync(Timeout);

        Assert.That(exchange.Ok, Is.False);
        Assert.That(exchange.Error, Is.EqualTo("reload failed: engine gone"));
    }

    [Test]
    public async Task Start_StaleSocketFile_Replaced()
    {
        Directory.CreateDirectory(Path.GetDirectoryName(SocketPath)!);
        // .NET unlinks a socket file when the socket that bound it is disposed; a killed daemon leaves it, as python does.
        using (var python = System.Diagnostics.Process.Start("python3", ["-c", "import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])", SocketPath]))
        {
            await python.WaitForExitAsync().WaitAsync(Timeout);
        }

        Assert.That(Path.Exists(SocketPath), Is.True, "a socket file nobody listens on");
        await using var server = Start();

        Assert.That((await ControlClient.SendAsync(SocketPath, ControlCommand.Status, Timeout).WaitAsync(Timeout)).Ok, Is.True);
    }

    [Test]
    public async Task Start_AnotherServerListening_RefusedAndTheOtherKeepsItsSocket()
    {
        await using var first = Start();

        var second = ControlServer.Start(SocketPath, Stub, TimeProvider.System, out var error);

        Assert.That(second, Is.Null);
        Assert.That(error, Is.EqualTo($"{SocketPath} is in use by another running proxysel"));
        Assert.That((await ControlClient.SendAsync(SocketPath, ControlCommand.Status, Timeout).WaitAsync(Timeout)).Ok, Is.True);
    }

    [Test]
    public async Task DisposeAsync_RemovesTheSocketFile()
    {
        var server = Start();

        await server.DisposeAsync().AsTask().WaitAsync(Timeout);

        Assert.That(Path.Exists(SocketPath), Is.False);
    }

    [Test]
    public async Task Client_NoServer_FailsNamingTheSocket()
    {
        var exchange = await ControlClient.SendAsync(SocketPath, ControlCommand.Status, Timeout).WaitAsync(Timeout);

        Assert.That(exchange.Ok, Is.False);
        Assert.That(exchange.Error, Does.StartWith($"cannot reach the control socket {SocketPath}: "));
    }

    [Test]
    public void Start_RegularFileAtThePath_RefusedAndTheFileKept()
    {
        Directory.CreateDirectory(Path.GetDirectoryName(SocketPath)!);
        File.WriteAllText(SocketPath, "precious");

        var server = ControlServer.Start(SocketPath, Stub, TimeProvider.System, out var error);

        Assert.That(server, Is.Null);
        Assert.That(error, Is.EqualTo($"{SocketPath} exists and is not a socket"));
        Assert.That(File.ReadAllText(SocketPath), Is.EqualTo("precious"));
    }

    [Test]
    public void Start_SymlinkAtThePath_RefusedAndBothKept()
    {
        Directory.CreateDirectory(Path.GetDirectoryName(SocketPath)!);
        var target = Path.Combine(_directory, "target");
        File.WriteAllText(target, "precious");
        File.CreateSymbolicLink(SocketPath, target);

        var server = ControlServer.Start(SocketPath, Stub, TimeProvider.System, out var error);

        Assert.That(server, Is.Null);
        Assert.That(error, Is.EqualTo($"{SocketPath} exists and is not a socket"));
        Assert.That(new FileInfo(SocketPath).LinkTarget, Is.EqualTo(target));
        Assert.That(File.ReadAllText(target), Is.EqualTo("precious"));
    }

    [Test]
    public void Start_FolderWorldWritableWithoutSticky_Refused()
    {
        var folder = Path.GetDirectoryName(SocketPath)!;
        Directory.CreateDirectory(folder);
        File.SetUnixFileMode(folder, (UnixFileMode)0x1FF);

        var server = ControlServer.Start(SocketPath, Stub, TimeProvider.System, out var error);

        Assert.That(server, Is.Null);
        Assert.That(error, Is.EqualTo($"{folder} is world-writable without the sticky bit; give the control socket a private folder"));
        Assert.That(Path.Exists(SocketPath), Is.False);
    }

    [Test]
    public async Task Start_FolderWorldWritableWithSticky_Served()
    {
        var folder = Path.GetDirectoryName(SocketPath)!;
        Directory.CreateDirectory(folder);
        File.SetUnixFileMode(folder, (UnixFileMode)0x3FF);
        await using var server = Start();

        Assert.That(File.GetUnixFileMode(SocketPath), Is.EqualTo(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.GroupWrite));
        Assert.That((await ControlClient.SendAsync(SocketPath, ControlCommand.Status, Timeout).WaitAsync(Timeout)).Ok, Is.True);
    }

    [Test]
    public void Start_FolderIsASymlink_Refused()
    {
        var real = Path.Combine(_directory, "real");
        Directory.CreateDirectory(real);
        var folder = Path.GetDirectoryName(SocketPath)!;
        Directory.CreateDirectory(Path.GetDirectoryName(folder)!);
        Directory.CreateSymbolicLink(folder, real);

        var server = ControlServer.Start(SocketPath, Stub, TimeProvider.System, out var error);

        Assert.That(server, Is.Null);
        Assert.That(error, Is.EqualTo($"{folder} is a symlink; give the control socket a path in a real folder"));
        Assert.That(Directory.GetFileSystemEntries(real), Is.Empty);
    }

    [Test]
    public async Task Connection_DuplicatedCommandKey_ErrorReplyThenServedOnTheSameConnection()
    {
        await using var server = Start();
        using var client = await ConnectAsync();

        var lines = await ExchangeAsync(client, "{\"command\":\"status\",\"command\":\"reload\"}\n{\"command\":\"status\"}\n", expectedLines: 2);

        Assert.That(lines, Has.Count.EqualTo(2));
        Assert.That(lines[0], Does.StartWith("{\"ok\":false,\"error\":\"malformed JSON"));
        Assert.That(lines[1], Is.EqualTo("{\"ok\":true,\"applied\":true,\"message\":\"status\"}"));
    }

    [Test]
    public async Task Connection_OneOverMaxClientsWithItsRequestSent_GetsTheBusyReply()
    {
        var limits = new ControlLimits { MaxClients = 8, MaxPerProcess = 64 };
        await using var server = ControlServer.Start(SocketPath, Stub, TimeProvider.System, out var error, limits) ?? throw new AssertionException(error);
        var held = new List<Socket>();
        try
        {
            for (int i = 0; i < limits.MaxClients; i++)
            {
                var socket = await ConnectAsync();
                held.Add(socket);
                // A reply proves the server took this client into a slot.
                Assert.That((await ExchangeAsync(socket, "{\"command\":\"status\"}\n", expectedLines: 1))[0], Does.StartWith("{\"ok\":true"));
            }

            using var extra = await ConnectAsync();
            var lines = await ExchangeAsync(extra, "{\"command\":\"status\"}\n{\"command\":\"status\"}\n", expectedLines: 1);

            Assert.That(lines, Is.EqualTo(new[] { "{\"ok\":false,\"error\":\"busy: too many control clients; try again\"}" }));
        }
        finally
        {
            held.ForEach(s => s.Dispose());
        }
    }

    [TestCase(0)]
    [TestCase(108)]
    public async Task Client_UnusablePath_FailsNamingThePath(int length)
    {
        var path = length == 0 ? "" : "/" + new string('p', length - 1);

        var exchange = await ControlClient.SendAsync(path, ControlCommand.Status, Timeout).WaitAsync(Timeout);

        Assert.That(exchange.Ok, Is.False);
        Assert.That(exchange.Error, Does.StartWith($"bad control socket path \"{path}\": "));
    }

    [Test]
    public async Task AcceptLoop_AcceptFailsEveryTime_WaitsTheBackoffBeforeEachRetry()
    {
        var time = new BackoffRecordingTime();
        await using var server = ControlServer.Start(SocketPath, Stub, time, out var error)!;
        Assert.That(server, Is.Not.Null, error);

        // Closed behind the server's back, the listener fails every accept at once, as EMFILE would.
        server.Listener.Dispose();
        await time.Requested.Reader.ReadAsync().AsTask().WaitAsync(Timeout);

        Assert.That(time.Requested.Reader.TryRead(out _), Is.False, "no second accept before the backoff elapsed");
        time.Fire();
        await time.Requested.Reader.ReadAsync().AsTask().WaitAsync(Timeout);
    }

    /// <summary>System time, except that backoff-length timers only fire when the test says so.</summary>
    private sealed class BackoffRecordingTime : TimeProvider
    {
        private static readonly TimeSpan Never = global::System.Threading.Timeout.InfiniteTimeSpan;

        private readonly List<(TimerCallback Callback, object? State)> _pending = [];

        public Channel<bool> Requested { get; } = Channel.CreateUnbounded<bool>();

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
        {
            if (dueTime != ControlServer.AcceptErrorBackoff)
            {
                return TimeProvider.System.CreateTimer(callback, state, dueTime, period);
            }

            lock (_pending)
            {
                _pending.Add((callback, state));
            }

            Requested.Writer.TryWrite(true);
            return TimeProvider.System.CreateTimer(_ => { }, null, Never, Never);
        }

        public void Fire()
        {
            List<(TimerCallback Callback, object? State)> due;
            lock (_pending)
            {
                due = [.. _pending];
                _pending.Clear();
            }

            due.ForEach(t => t.Callback(t.State));
        }
    }

    private async Task<Socket> ConnectAsync()
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(SocketPath)).WaitAsync(Timeout);
        return socket;
    }

    private static async Task<List<string>> ExchangeAsync(Socket socket, string send, int expectedLines)
    {
        await socket.SendAsync(Encoding.UTF8.GetBytes(send), SocketFlags.None).WaitAsync(Timeout);
        var received = new StringBuilder();
        var buffer = new byte[4096];
        while (received.ToString().Count(c => c == '\n') < expectedLines)
        {
            int read = await socket.ReceiveAsync(buffer, SocketFlags.None).WaitAsync(Timeout);
            if (read == 0)
            {
                break;
            }

            received.Append(Encoding.UTF8.GetString(buffer, 0, read));
        }

        return [.. received.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries)];
    }
}

/// <summary>Per-peer limits (SO_PEERCRED) of the control socket: one process cannot take every slot.</summary>
public sealed class ControlServerLimitTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    private string _directory = "";

    [SetUp]
    public void CreateDirectory() => _directory = Directory.CreateTempSubdirectory("psel-ctl-limits-").FullName;

    [TearDown]
    public void RemoveDirectory() => Directory.Delete(_directory, recursive: true);

    private string SocketPath => Path.Combine(_directory, "ctl.sock");

    private static byte[] Status(ControlCommand command) => ControlProtocol.FormatOk(new ReloadReply(true, ControlProtocol.NameOf(command)));

    [Test]
    public async Task Connection_OneOverThePerProcessLimit_BusyNamingTheProcessLimit()
    {
        await using var server = ControlServer.Start(SocketPath, Status, TimeProvider.System, out var error) ?? throw new AssertionException(error);
        var held = new List<Socket>();
        try
        {
            for (int i = 0; i < server.Limits.MaxPerProcess; i++)
            {
                held.Add(await ConnectAsync());
                Assert.That(await ExchangeAsync(held[^1], "{\"command\":\"status\"}\n"), Does.StartWith("{\"ok\":true"));
            }

            using var extra = await ConnectAsync();
            Assert.That(await ExchangeAsync(extra, "{\"command\":\"status\"}\n"), Does.Contain("too many control connections from this process"));
        }
        finally
        {
            held.ForEach(s => s.Dispose());
        }
    }

    [Test]
    public async Task Status_From_AnotherProcess_AnsweredWhile32IdleClientsHoldConnections()
    {
        await using var server = ControlServer.Start(SocketPath, Status, TimeProvider.System, out var error) ?? throw new AssertionException(error);
        var idle = new List<Socket>();
        try
        {
            for (int i = 0; i < 32; i++)
            {
                idle.Add(await ConnectAsync());
            }

            // The real client, a process of its own: `proxysel status`.
            var start = new System.Diagnostics.ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var arg in new[] { Path.Combine(AppContext.BaseDirectory, "proxysel.dll"), "status", "--socket", SocketPath, "--json" })
            {
                start.ArgumentList.Add(arg);
            }

            using var process = System.Diagnostics.Process.Start(start)!;
            using var cancel = new CancellationTokenSource(Timeout);
            var stdout = process.StandardOutput.ReadToEndAsync(cancel.Token);
            var stderr = process.StandardError.ReadToEndAsync(cancel.Token);
            await process.WaitForExitAsync(cancel.Token);

            Assert.That(process.ExitCode, Is.EqualTo(ExitCodes.Ok), await stderr);
            Assert.That(await stdout, Does.StartWith("{\"ok\":true"));
        }
        finally
        {
            idle.ForEach(s => s.Dispose());
        }
    }

    private async Task<Socket> ConnectAsync()
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        using var cancel = new CancellationTokenSource(Timeout);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(SocketPath), cancel.Token);
        return socket;
    }

    private static async Task<string> ExchangeAsync(Socket socket, string request)
    {
        using var cancel = new CancellationTokenSource(Timeout);
        await socket.SendAsync(System.Text.Encoding.UTF8.GetBytes(request), SocketFlags.None, cancel.Token);
        var buffer = new byte[4096];
        var text = new System.Text.StringBuilder();
        while (!text.ToString().Contains('\n', StringComparison.Ordinal))
        {
            int read = await socket.ReceiveAsync(buffer, SocketFlags.None, cancel.Token);
            if (read == 0)
            {
                break;
            }

            text.Append(System.Text.Encoding.UTF8.GetString(buffer, 0, read));
        }

        return text.ToString().Split('\n')[0];
    }
}
