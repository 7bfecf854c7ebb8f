using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;

namespace ProxySelection.Host.Control;

/// <summary>One request, one reply over the control socket (what <c>proxysel status</c> and <c>proxysel cache</c> do).</summary>
internal static class ControlClient
{
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(5);

    /// <summary>Sends <paramref name="command"/>; the raw reply line and its parsed object, or why there is none.</summary>
    public static async Task<ControlExchange> SendAsync(string path, ControlCommand command, TimeSpan timeout)
    {
        UnixDomainSocketEndPoint endpoint;
        try
        {
            endpoint = new UnixDomainSocketEndPoint(path);
        }
        catch (ArgumentException e)
        {
            // Empty, or longer than sun_path (107 bytes and its NUL).
            return ControlExchange.Failed($"bad control socket path \"{path}\": {(path.Length == 0 ? "empty" : e.Message)}");
        }

        using var cancel = new CancellationTokenSource(timeout);
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        string line;
        try
        {
            await socket.ConnectAsync(endpoint, cancel.Token).ConfigureAwait(false);
            await socket.SendAsync(Encoding.UTF8.GetBytes(ControlProtocol.FormatRequest(command) + "\n"), SocketFlags.None, cancel.Token).ConfigureAwait(false);
            line = await ReadLineAsync(socket, cancel.Token).ConfigureAwait(false);
        }
        catch (SocketException e)
        {
            return ControlExchange.Failed($"cannot reach the control socket {path}: {e.Message}");
        }
        catch (OperationCanceledException)
        {
            return ControlExchange.Failed($"no reply from the control socket {path} within {timeout.TotalSeconds:0.#} s");
        }

        return ControlProtocol.TryParseReply(line, out var reply, out var error)
            ? new ControlExchange(true, line, reply, "")
            : new ControlExchange(false, line, reply, error);
    }

    private static async Task<string> ReadLineAsync(Socket socket, CancellationToken cancellationToken)
    {
        var received = new MemoryStream();
        var buffer = new byte[16 * 1024];
        while (true)
        {
            int read = await socket.ReceiveAsync(buffer, SocketFlags.None, cancellationToken).ConfigureAwait(false);
            if (read == 0)
            {
                break;
            }

            int newline = Array.IndexOf(buffer, (byte)'\n', 0, read);
            received.Write(buffer, 0, newline >= 0 ? newline : read);
            if (newline >= 0)
            {
                break;
            }
        }

        return Encoding.UTF8.GetString(received.GetBuffer(), 0, (int)received.Length);
    }
}

/// <summary>The outcome of one control request: <see cref="Line"/> is the reply as sent (for <c>--json</c>).</summary>
internal sealed record ControlExchange(bool Ok, string Line, JsonObject Reply, string Error)
{
    public static ControlExchange Failed(string error) => new(false, "", [], error);
}
