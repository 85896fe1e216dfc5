using System.Buffers;
using System.IO.Pipelines;
using System.Runtime.InteropServices;
using Microsoft.AspNetCore.Connections;

namespace Glm.Server.Hosting;

/// <summary>
/// RFC 9110 §8.6: Content-Length is one or more digits. Kestrel also reads "+14" (and other forms its number
/// parser takes) as 14; a proxy in front may read it otherwise, and that disagreement is how a second request
/// is smuggled inside the first one's body. Kestrel has no switch for this and normalizes the header before the
/// application sees it, so the check sits in front of Kestrel's parser, on the connection's bytes: a small
/// HTTP/1.1 framing tracker (request heads line by line, bodies skipped by their Content-Length or chunked
/// framing) finds each Content-Length line before Kestrel reads it, and turns a value that is not plain digits
/// into one Kestrel refuses, so Kestrel answers 400 and closes the connection, serving nothing behind it.
/// </summary>
public static class StrictContentLength
{
    public static void Use(Microsoft.AspNetCore.Server.Kestrel.Core.ListenOptions listen) =>
        listen.Use(next => connection =>
        {
            var transport = connection.Transport;
            connection.Transport = new Duplex(new InspectingReader(transport.Input), transport.Output);
            return next(connection);
        });

    private sealed class Duplex(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;
        public PipeWriter Output { get; } = output;
    }

    /// <summary>Passes the inner reader's data through, inspecting each byte once, before Kestrel sees it.</summary>
    private sealed class InspectingReader(PipeReader inner) : PipeReader
    {
        private readonly Framing _framing = new();
        private long _inspected;      // bytes of the stream inspected so far
        private long _consumed;       // bytes of the stream Kestrel has consumed
        private ReadOnlySequence<byte> _lastBuffer;

        public override async ValueTask<ReadResult> ReadAsync(CancellationToken ct = default)
        {
            var result = await inner.ReadAsync(ct);
            Inspect(result.Buffer);
            return result;
        }

        public override bool TryRead(out ReadResult result)
        {
            if (!inner.TryRead(out result)) return false;
            Inspect(result.Buffer);
            return true;
        }

        private void Inspect(ReadOnlySequence<byte> buffer)
        {
            _lastBuffer = buffer;
            long seen = _inspected - _consumed; // the start of this buffer was inspected in an earlier read
            if (buffer.Length <= seen || _framing.Stopped) return;
            var fresh = buffer.Slice(seen);
            // Pipe buffers are the connection's own writable memory, not yet read by Kestrel's parser.
            foreach (var segment in fresh) _framing.Feed(MemoryMarshal.AsMemory(segment));
            _inspected += fresh.Length;
        }

        public override void AdvanceTo(SequencePosition consumed) => AdvanceTo(consumed, consumed);

        public override void AdvanceTo(SequencePosition consumed, SequencePosition examined)
        {
            _consumed += _lastBuffer.Slice(0, consumed).Length;
            inner.AdvanceTo(consumed, examined);
        }

        public override void CancelPendingRead() => inner.CancelPendingRead();
        public override void Complete(Exception? exception = null) => inner.Complete(exception);
        public override ValueTask CompleteAsync(Exception? exception = null) => inner.CompleteAsync(exception);
    }

    /// <summary>The byte-level state machine over one connection's request stream.</summary>
    internal sealed class Framing
    {
        private enum State { HeadLine, Body, ChunkSize, ChunkExtension, ChunkData, ChunkDataEnd, Trailer }

        private const int MaxLine = 16 * 1024;
        private State _state = State.HeadLine;
        private readonly byte[] _line = new byte[MaxLine];
        private int _lineLength;
        private bool _firstLine = true;
        private long _contentLength = -1;
        private bool _chunked;
        private long _remaining;
        private long _chunkSize;
        private bool _chunkDigits;
        // Where the current head line's bytes live, so a bad value can be rewritten in place before Kestrel reads it.
        private readonly List<(Memory<byte> Memory, int Start, int LineOffset)> _lineSegments = [];

        /// <summary>True once the stream is not HTTP/1.1 framing we follow (an over-long line, HTTP/2): left to Kestrel.</summary>
        public bool Stopped { get; private set; }

        public void Feed(Memory<byte> memory)
        {
            var span = memory.Span;
            bool recorded = false; // whether the current line's part in this segment is in _lineSegments
            for (int i = 0; i < span.Length && !Stopped; i++)
            {
                switch (_state)
                {
                    case State.HeadLine or State.Trailer:
                        if (!recorded) { _lineSegments.Add((memory, i, _lineLength)); recorded = true; }
                        if (_lineLength == MaxLine) { Stopped = true; break; } // Kestrel answers 431 itself
                        _line[_lineLength++] = span[i];
                        if (span[i] == (byte)'\n') { EndLine(); recorded = false; }
                        break;
                    case State.Body:
                    {
                        long take = Math.Min(_remaining, span.Length - i);
                        _remaining -= take;
                        i += (int)take - 1;
                        if (_remaining == 0) NextRequest();
                        break;
                    }
                    case State.ChunkSize:
                        byte c = span[i];
                        int digit = HexValue(c);
                        if (digit >= 0)
                        {
                            if (_chunkSize > (long.MaxValue >> 4)) { Stopped = true; break; }
                            _chunkSize = (_chunkSize << 4) | (uint)digit;
                            _chunkDigits = true;
                        }
                        else if (c == (byte)'\n') EndChunkSize();
                        else if (c is (byte)';' or (byte)' ' or (byte)'\t' or (byte)'\r') _state = State.ChunkExtension;
                        else { Stopped = true; } // malformed: Kestrel refuses it
                        break;
                    case State.ChunkExtension:
                        if (span[i] == (byte)'\n') EndChunkSize();
                        break;
                    case State.ChunkData:
                    {
                        long take = Math.Min(_remaining, span.Length - i);
                        _remaining -= take;
                        i += (int)take - 1;
                        if (_remaining == 0) _state = State.ChunkDataEnd;
                        break;
                    }
                    case State.ChunkDataEnd:
                        if (span[i] == (byte)'\n') { _state = State.ChunkSize; _chunkSize = 0; _chunkDigits = false; }
                        else if (span[i] != (byte)'\r') Stopped = true;
                        break;
                }
            }
        }

        private void EndChunkSize()
        {
            if (!_chunkDigits) { Stopped = true; return; }
            if (_chunkSize == 0) { _state = State.Trailer; _lineLength = 0; _lineSegments.Clear(); return; }
            _remaining = _chunkSize;
            _state = State.ChunkData;
        }

        private void EndLine()
        {
            var line = _line.AsSpan(0, _lineLength).TrimEnd("\r\n"u8);
            bool blank = line.Length == 0;
            if (_state == State.Trailer)
            {
                if (blank) NextRequest();
            }
            else if (blank)
            {
                // The empty line after a request line (leading CRLFs are allowed before one) or after the headers.
                if (!_firstLine) StartBody();
            }
            else if (_firstLine)
            {
                _firstLine = false;
                if (line.StartsWith("PRI "u8)) Stopped = true; // HTTP/2 prior knowledge: not ours to follow
            }
            else Header(line);
            _lineLength = 0;
            _lineSegments.Clear();
        }

        private void Header(ReadOnlySpan<byte> line)
        {
            int colon = line.IndexOf((byte)':');
            if (colon <= 0) return;
            var name = line[..colon];
            int valueStart = colon + 1;
            while (valueStart < line.Length && line[valueStart] is (byte)' ' or (byte)'\t') valueStart++;
            var value = line[valueStart..].TrimEnd(" \t"u8);
            if (System.Text.Ascii.EqualsIgnoreCase(name, "content-length"u8))
            {
                bool digits = value.Length is > 0 and <= 18;
                foreach (byte b in value) digits &= b is >= (byte)'0' and <= (byte)'9';
                if (!digits)
                {
                    Poison(valueStart);
                    return;
                }
                long n = long.Parse(value);
                if (_contentLength >= 0 && _contentLength != n) { Stopped = true; return; } // Kestrel refuses conflicting lengths
                _contentLength = n;
            }
            else if (System.Text.Ascii.EqualsIgnoreCase(name, "transfer-encoding"u8)
                     && System.Text.Encoding.ASCII.GetString(value).Contains("chunked", StringComparison.OrdinalIgnoreCase))
                _chunked = true;
        }

        /// <summary>Rewrites the value's first byte to 'x': Kestrel then refuses the header with 400 and closes the connection.</summary>
        private void Poison(int lineOffset)
        {
            for (int k = _lineSegments.Count - 1; k >= 0; k--)
            {
                var (memory, start, offset) = _lineSegments[k];
                if (offset > lineOffset) continue;
                int at = start + (lineOffset - offset);
                if (at < memory.Length) memory.Span[at] = (byte)'x';
                break;
            }
            Stopped = true; // Kestrel closes the connection after refusing; nothing further to follow
        }

        private void StartBody()
        {
            if (_chunked) { _state = State.ChunkSize; _chunkSize = 0; _chunkDigits = false; }
            else if (_contentLength > 0) { _state = State.Body; _remaining = _contentLength; }
            else NextRequest();
        }

        private void NextRequest()
        {
            _state = State.HeadLine;
            _firstLine = true;
            _contentLength = -1;
            _chunked = false;
            _lineLength = 0;
            _lineSegments.Clear();
        }

        private static int HexValue(byte c) => c switch
        {
            >= (byte)'0' and <= (byte)'9' => c - '0',
            >= (byte)'a' and <= (byte)'f' => c - 'a' + 10,
            >= (byte)'A' and <= (byte)'F' => c - 'A' + 10,
            _ => -1,
        };
    }
}
